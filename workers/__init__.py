"""The Backstop engine: domain models, the Redis store, intake, and (later) the jobs.

Imports `config` and libraries, never `receiver`.
"""
