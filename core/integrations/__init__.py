"""The only modules that import outside systems' client libraries (Kubernetes, Jira, ...)."""
