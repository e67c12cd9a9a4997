"""pytest plugin: a real Kubernetes API for integration tests (fixtures `kube`, `kube_namespace`).

By default the session starts the local control plane (kube.py) in a temporary directory
and stops it, by pid, at the end. With `BACKSTOP_TEST_KUBECONFIG` set, the tests run
against that cluster instead and nothing is started; the levers that need the local
stack (holding images unready, static tokens) then skip the test that pulls them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from testbed.kube import kubebuild, pods
from testbed.kube.kube import ControlPlane, write_kubeconfig

EXTERNAL_ENV = "BACKSTOP_TEST_KUBECONFIG"
TOKEN_SECONDS = 24 * 3600


class Kube:
    """A cluster for tests: its admin kubeconfig, fresh clients, and the local stack's levers."""

    def __init__(self, kubeconfig: Path, scratch: Path, plane: ControlPlane | None = None) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.plane = plane
        self.workdir = plane.workdir if plane else None
        self._scratch = scratch

    @property
    def local(self) -> bool:
        """True when the session started its own control plane (and pod helper)."""
        return self.plane is not None

    def api_client(self, token: str | None = None) -> client.ApiClient:
        """Return a new ApiClient: the admin's, or one authenticating with token."""
        path = self.kubeconfig_for(token) if token else self.kubeconfig
        return config.new_client_from_config(str(path))

    def kubeconfig_for(self, token: str) -> Path:
        """Write a kubeconfig for the same cluster that authenticates with token (for workers)."""
        with config.new_client_from_config(str(self.kubeconfig)) as admin:
            settings = admin.configuration
        path = self._scratch / f"kubeconfig-{uuid.uuid4().hex[:8]}"
        ca_pem = Path(settings.ssl_ca_cert).read_bytes() if settings.ssl_ca_cert else None
        write_kubeconfig(path, settings.host, token, ca_pem)
        return path

    def hold_unready(self, image: str) -> None:
        """Keep pods of image Running but not Ready (stages a failed rollout)."""
        pods.hold_unready(self._local_workdir("holding images unready"), image)

    def release(self, image: str) -> None:
        """Let pods of image become Ready again."""
        pods.release(self._local_workdir("releasing held images"), image)

    def add_token(self, name: str, groups: tuple[str, ...] = ()) -> str:
        """Create a static-token user with the given groups (no RBAC rights of its own)."""
        self._local_workdir("static tokens")
        return self.plane.add_token(name, groups)

    def service_account_token(self, namespace: str, name: str) -> str:
        """Create ServiceAccount namespace/name if needed; return a token for it (any cluster)."""
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            try:
                core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
            except client.ApiException as error:
                if error.status != 409:
                    raise
            request = {"spec": {"audiences": [], "expirationSeconds": TOKEN_SECONDS}}
            answer = core.create_namespaced_service_account_token(name, namespace, request)
            return answer.status.token

    @contextlib.contextmanager
    def crds(self, *files: Path, keep: tuple[str, ...] = ()):
        """Install the CRDs of `files` where the cluster lacks them (it may have the real
        ones: those are used and left alone), wait until each is established, and delete
        the ones installed here afterwards, except those named in `keep`."""
        from tests.conftest import wait_for

        created = []
        with self.api_client() as api:
            extensions = client.ApiextensionsV1Api(api)
            for path in files:
                for crd in yaml.safe_load_all(Path(path).read_text()):
                    try:
                        extensions.create_custom_resource_definition(crd)
                    except client.ApiException as error:
                        if error.status != 409:
                            raise
                        continue
                    created.append(crd["metadata"]["name"])
            for name in created:
                wait_for(lambda n=name: _established(extensions, n), message=f"CRD {name}")
            try:
                yield created
            finally:
                for name in created:
                    if name not in keep:
                        extensions.delete_custom_resource_definition(name)

    def _local_workdir(self, what: str) -> Path:
        """Return the local stack's directory, or skip the test on an external cluster."""
        if self.workdir is None:
            pytest.skip(f"{what} needs the local test control plane; {EXTERNAL_ENV} is set")
        return self.workdir


def _established(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    conditions = extensions.read_custom_resource_definition(name).status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _binaries(pytestconfig: pytest.Config) -> Path:
    """Find or build the Kubernetes binaries, showing the one-time build's progress live."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    shown = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with shown:
        return kubebuild.ensure_binaries()


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config):
    """The session's Kubernetes cluster (local control plane unless BACKSTOP_TEST_KUBECONFIG)."""
    scratch = tmp_path_factory.mktemp("kubeconfigs")
    external = os.environ.get(EXTERNAL_ENV)
    if external:
        yield Kube(Path(external), scratch)
        return
    plane = ControlPlane(tmp_path_factory.mktemp("kube"), binaries=_binaries(pytestconfig))
    plane.start()
    try:
        yield Kube(plane.kubeconfig, scratch, plane)
    finally:
        plane.stop()


@pytest.fixture
def kube_namespace(kube: Kube):
    """A fresh namespace for one test, deleted (with everything in it) afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": name, "labels": {"backstop-test": "true"}}})
        yield name
        core.delete_namespace(name)
