"""The owners' objects as plain JSON dicts: Argo CD Applications and ApplicationSets, Flux
Kustomizations, HelmReleases, GitRepositories and ImageUpdateAutomations, and Helm's
release Secrets.

An object is named by its API version and plural (`Ref`); every write carries the field
manager `backstop`, so `kubectl get -o yaml --show-managed-fields` says who changed what.
Errors are classified as in core/integrations/kubernetes.py (NotFound, Conflict,
TransientError, PermanentError).
"""

import json
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client

from core.integrations.kubernetes import FIELD_MANAGER, PATCH_TYPES, ApiClient, classify

TIMEOUT = 30


@dataclass(frozen=True)
class Ref:
    """A kind of object by its API: `argoproj.io/v1alpha1` and `applications`."""

    api_version: str
    plural: str
    kind: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


APPLICATION = Ref("argoproj.io/v1alpha1", "applications", "Application")
APPLICATION_SET = Ref("argoproj.io/v1alpha1", "applicationsets", "ApplicationSet")
KUSTOMIZATION = Ref("kustomize.toolkit.fluxcd.io/v1", "kustomizations", "Kustomization")
HELM_RELEASE = Ref("helm.toolkit.fluxcd.io/v2", "helmreleases", "HelmRelease")
GIT_REPOSITORY = Ref("source.toolkit.fluxcd.io/v1", "gitrepositories", "GitRepository")
IMAGE_UPDATE = Ref(
    "image.toolkit.fluxcd.io/v1beta2", "imageupdateautomations", "ImageUpdateAutomation"
)


class Objects:
    """Reads and writes of owner objects and Secrets, as JSON dicts."""

    def __init__(self, api: ApiClient, *, timeout: float = TIMEOUT):
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.timeout = timeout

    def _json(self, call) -> dict:
        try:
            response = call(_preload_content=False, _request_timeout=self.timeout)
        except Exception as exc:
            raise classify(exc) from exc
        try:
            return json.loads(response.data)
        finally:
            response.release_conn()

    def get(self, ref: Ref, namespace: str, name: str) -> dict:
        """One object; NotFound when it does not exist."""
        return self._json(
            lambda **kw: self.custom.get_namespaced_custom_object(
                ref.group, ref.version, namespace, ref.plural, name, **kw
            )
        )

    def all(self, ref: Ref, namespace: str | None = None) -> list[dict]:
        """Every object of a kind, in `namespace` or everywhere."""
        if namespace is None:
            call = lambda **kw: self.custom.list_cluster_custom_object(  # noqa: E731
                ref.group, ref.version, ref.plural, **kw
            )
        else:
            call = lambda **kw: self.custom.list_namespaced_custom_object(  # noqa: E731
                ref.group, ref.version, namespace, ref.plural, **kw
            )
        return self._json(call).get("items", [])

    def merge(self, ref: Ref, namespace: str, name: str, body: dict) -> dict:
        """A JSON merge patch (RFC 7386: null deletes); the object as patched. A
        `metadata.resourceVersion` in `body` makes it conditional (Conflict if it moved)."""
        return self._json(
            lambda **kw: self.custom.patch_namespaced_custom_object(
                ref.group,
                ref.version,
                namespace,
                ref.plural,
                name,
                body,
                field_manager=FIELD_MANAGER,
                _content_type=PATCH_TYPES["merge"],
                **kw,
            )
        )

    # -- Secrets (Helm's release storage) -------------------------------------------------

    def secrets(self, namespace: str, labels: dict[str, str]) -> list[dict]:
        """The Secrets in `namespace` carrying all `labels`."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return self._json(
            lambda **kw: self.core.list_namespaced_secret(namespace, label_selector=selector, **kw)
        ).get("items", [])

    def create_secret(self, namespace: str, body: dict) -> dict:
        """Create a Secret; Conflict when one of that name exists."""
        return self._json(
            # The client sends a dict body as it is; its stubs only name the model class.
            lambda **kw: self.core.create_namespaced_secret(
                namespace, cast(Any, body), field_manager=FIELD_MANAGER, **kw
            )
        )

    def merge_secret(self, namespace: str, name: str, body: dict) -> dict:
        """A JSON merge patch of a Secret (conditional on a resourceVersion in `body`)."""
        return self._json(
            lambda **kw: self.core.patch_namespaced_secret(
                name,
                namespace,
                body,
                field_manager=FIELD_MANAGER,
                _content_type=PATCH_TYPES["merge"],
                **kw,
            )
        )
