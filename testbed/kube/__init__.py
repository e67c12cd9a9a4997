"""The real test stack: a local Kubernetes control plane built and started by the project itself."""
