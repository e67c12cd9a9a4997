"""The backstop command and what only it runs."""
