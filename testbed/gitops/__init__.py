"""Stand-ins for the owners that deploy workloads from a source of truth, each playing its
original's part over the original's API objects (tests/manifests/gitops-crds.yaml):
Argo CD's application controller (argocd.py) and ApplicationSet controller (appset.py),
Flux's kustomize- and helm-controller (flux.py) and image automation (imageautomation.py),
and the Helm CLI with Helm's release storage (helm.py). They read desired state from a
local Git repository (git.py) and share one client and reconcile loop (cluster.py).
"""
