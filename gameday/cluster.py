"""The demo workloads on the game day's cluster: create, change image, read back, wait."""

import time

from kubernetes import client

SERVICE_LABEL = "demo.backstop.io/service"
SCHEMA_ANNOTATION = "backstop.io/schema-version"


def deployment(name: str, image: str, *, replicas: int = 2, service: str | None = None) -> dict:
    """A demo Deployment: pods labelled with their service (the demo counts their traffic)
    and the schema marker the migration guard reads."""
    labels = {"app": name, SERVICE_LABEL: service or name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels, "annotations": {SCHEMA_ANNOTATION: "1"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


class Cluster:
    """Deployments of the demo service in one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str):
        self.apps = client.AppsV1Api(api)
        self.namespace = namespace

    def create(
        self, name: str, image: str, *, replicas: int = 2, service: str | None = None
    ) -> None:
        """Create (or replace the template of) a demo Deployment."""
        body = deployment(name, image, replicas=replicas, service=service)
        try:
            self.apps.create_namespaced_deployment(self.namespace, body)
        except client.ApiException as error:
            if error.status != 409:
                raise
            self.apps.replace_namespaced_deployment(name, self.namespace, body)

    def deploy(self, name: str, image: str, *, schema: str | None = None) -> None:
        """Roll out a new image (and optionally a new schema marker), as CI would."""
        template: dict = {"spec": {"containers": [{"name": "app", "image": image}]}}
        if schema is not None:
            template["metadata"] = {"annotations": {SCHEMA_ANNOTATION: schema}}
        self.apps.patch_namespaced_deployment(
            name,
            self.namespace,
            {
                "metadata": {"annotations": {"kubernetes.io/change-cause": f"deploy {image}"}},
                "spec": {"template": template},
            },
        )

    def image(self, name: str) -> str:
        """The image the Deployment's template runs now."""
        found = self.apps.read_namespaced_deployment(name, self.namespace)
        return found.spec.template.spec.containers[0].image

    def revision(self, name: str) -> str:
        """The Deployment's current revision number."""
        found = self.apps.read_namespaced_deployment(name, self.namespace)
        return (found.metadata.annotations or {}).get("deployment.kubernetes.io/revision", "")

    def rolled_out(self, name: str) -> bool:
        """True when every replica runs the current template and is available."""
        found = self.apps.read_namespaced_deployment(name, self.namespace)
        status, wanted = found.status, found.spec.replicas or 0
        return (
            (status.observed_generation or 0) >= found.metadata.generation
            and (status.updated_replicas or 0) == wanted
            and (status.available_replicas or 0) == wanted
            and (status.replicas or 0) == wanted
        )

    def wait_rolled_out(self, *names: str, timeout: float = 60.0) -> None:
        """Wait until each named Deployment has rolled out."""
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            pending = [name for name in pending if not self.rolled_out(name)]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not rolled out after {timeout}s: {', '.join(pending)}")
            time.sleep(0.2)
