"""Backstop configuration: typed settings from the environment and the policy file.

This package imports nothing else of Backstop's; everything else may import it.
"""
