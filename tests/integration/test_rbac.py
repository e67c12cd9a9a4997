"""deploy/base/rbac.yaml is enough for the worker and the watcher, and no more; with
deploy/owners (and the example's Helm RoleBinding), the worker reaches the owners' objects
it acts through, and no more."""

import threading
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client, utils

from core.errors import PermanentError
from core.integrations import objects as owned
from core.integrations.kubernetes import Kube
from core.records import utcnow
from testbed.gitops import appset, argocd, flux, imageautomation
from tests.conftest import wait_for
from tests.workloads import FAST, bad_release, deployment
from workers.watcher import Watcher

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RBAC = DEPLOY / "base" / "rbac.yaml"
OWNERS = DEPLOY / "owners"
HELM_BINDING = DEPLOY / "examples" / "helm-release-secrets.yaml"
ARGOCD = "argocd"  # the namespace deploy/owners' Argo CD Roles are in (the policy's default)


@pytest.fixture(scope="module")
def tokens(kube):
    """Apply the manifests; tokens of the worker's and the watcher's ServiceAccounts."""
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        try:
            core.create_namespace({"metadata": {"name": "backstop"}})
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        for document in yaml.safe_load_all(RBAC.read_text()):
            try:
                utils.create_from_dict(api, document)
            except utils.FailToCreateError as exc:
                if any(e.status != 409 for e in exc.api_exceptions):
                    raise
    return {
        name: kube.service_account_token("backstop", f"backstop-{name}")
        for name in ("worker", "watcher")
    }


def test_worker_and_watcher_work_with_exactly_their_roles(kube, make_stack, tokens):
    stack = make_stack(FAST)
    workload = bad_release(stack)
    watcher_api = kube.api_client(tokens["watcher"])
    stop = threading.Event()
    watcher = Watcher(Kube(watcher_api), stack.store, stack.policy, utcnow, watch_seconds=2)
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: stack.store.rollouts.by_revision(workload, "2"), message="revision 2")
        worker_api = kube.api_client(tokens["worker"])
        rollback = stack.roll_back(stack.alert(workload), stack.executor(Kube(worker_api)))
        assert (rollback.status, rollback.target_revision) == ("verified", "1"), rollback.reason
        assert stack.store.rollbacks.evidence(rollback.id)["pods"]
        assert wait_for(lambda: stack.store.rollouts.by_revision(workload, "3"))
    finally:
        stop.set()
        thread.join(timeout=30)


@pytest.mark.parametrize(
    ("who", "call"),
    [
        ("worker", lambda apps, ns: apps.delete_namespaced_deployment("checkout", ns)),
        ("worker", lambda apps, ns: apps.create_namespaced_deployment(ns, deployment("x", "x:1"))),
        (
            "watcher",
            lambda apps, ns: apps.patch_namespaced_deployment(
                "checkout", ns, {"spec": {"replicas": 5}}
            ),
        ),
        ("watcher", lambda apps, ns: apps.read_namespaced_deployment("checkout", ns)),
    ],
)
def test_nothing_beyond_the_roles(kube, make_stack, tokens, who, call):
    stack = make_stack(FAST)
    stack.apps.create_namespaced_deployment(stack.namespace, deployment("checkout", "c:1"))
    with kube.api_client(tokens[who]) as api, pytest.raises(client.ApiException) as denied:
        call(client.AppsV1Api(api), stack.namespace)
    assert denied.value.status == 403


# --- deploy/owners: the worker's rights over Argo CD, Flux and Helm -------------------------

RBAC_DELETE = {
    "Role": "delete_namespaced_role",
    "RoleBinding": "delete_namespaced_role_binding",
    "ClusterRole": "delete_cluster_role",
    "ClusterRoleBinding": "delete_cluster_role_binding",
}


def owner_documents() -> list[dict]:
    """deploy/owners as `kubectl apply -k` applies it (its files, as they are)."""
    kustomization = yaml.safe_load((OWNERS / "kustomization.yaml").read_text())
    return [
        document
        for file in kustomization["resources"]
        for document in yaml.safe_load_all((OWNERS / file).read_text())
    ]


def create_all(api: client.ApiClient, documents: list[dict]) -> None:
    for document in documents:
        try:
            utils.create_from_dict(api, document)
        except utils.FailToCreateError as exc:
            if any(e.status != 409 for e in exc.api_exceptions):
                raise


@pytest.fixture(scope="module")
def owner_rights(kube, tokens, gitops_crds):
    """deploy/owners applied (Argo CD's namespace created where missing); both removed
    afterwards, so that no later module runs with these rights."""
    documents = owner_documents()
    with kube.api_client() as api:
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        created_namespace = False
        try:
            core.create_namespace({"metadata": {"name": ARGOCD}})
            created_namespace = True
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        create_all(api, documents)
        try:
            yield tokens
        finally:
            for document in documents:
                meta = document["metadata"]
                where = (meta["namespace"],) if "namespace" in meta else ()
                try:
                    getattr(rbac, RBAC_DELETE[document["kind"]])(meta["name"], *where)
                except client.ApiException as exc:
                    if exc.status != 404:
                        raise
            if created_namespace:
                core.delete_namespace(ARGOCD)
                # Gone before other modules (test_manifests) create it again.
                wait_for(lambda: gone(core, ARGOCD), timeout=120, message="argocd deleted")


def gone(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def bind_helm_secrets(api: client.ApiClient, namespace: str) -> None:
    """The example RoleBinding, as an operator applies it for `namespace`."""
    binding = yaml.safe_load(HELM_BINDING.read_text())
    binding["metadata"]["namespace"] = namespace
    create_all(api, [binding])


def denied(call) -> int:
    """The HTTP status a call that must fail failed with (0: it succeeded)."""
    try:
        call()
    except client.ApiException as exc:
        return exc.status
    except PermanentError as exc:
        cause = exc.__cause__
        return cause.status if isinstance(cause, client.ApiException) else -1
    return 0


def release_secret(release: str, version: int, status: str = "deployed") -> dict:
    """A Helm release Secret as the Helm CLI stores it (the payload does not matter here)."""
    labels = {"owner": "helm", "name": release, "version": str(version), "status": status}
    return {
        "metadata": {"name": f"sh.helm.release.v1.{release}.v{version}", "labels": labels},
        "type": "helm.sh/release.v1",
        "data": {"release": "SDRzSUFBQUFBQUFBLw=="},
    }


def by_backstop(body: dict) -> bool:
    return any(e.get("manager") == "backstop" for e in body["metadata"].get("managedFields", []))


@pytest.fixture
def owner_objects(kube, kube_namespace, owner_rights):
    """One of each owner object, created by the admin: Application and ApplicationSet in
    Argo CD's namespace (uniquely named, deleted afterwards), the Flux objects in the test
    namespace (which goes with them)."""
    suffix = uuid.uuid4().hex[:8]
    app = argocd.application(f"shop-{suffix}", "https://git.example/shop", namespace="shop")
    template = {"metadata": {"name": "{{name}}"}, "spec": app["spec"]}
    bodies = {
        owned.APPLICATION: (ARGOCD, app),
        owned.APPLICATION_SET: (
            ARGOCD,
            appset.application_set(f"shops-{suffix}", [{"name": "a"}], template),
        ),
        owned.GIT_REPOSITORY: (kube_namespace, flux.git_repository("shop", "https://git.example")),
        owned.KUSTOMIZATION: (kube_namespace, flux.kustomization("shop", "shop", "./apps")),
        owned.HELM_RELEASE: (kube_namespace, flux.helm_release("shop", "shop", "./charts/shop")),
        owned.IMAGE_UPDATE: (
            kube_namespace,
            imageautomation.image_update_automation("shop", "shop", "./apps"),
        ),
    }
    with kube.api_client() as api:
        custom = client.CustomObjectsApi(api)
        for ref, (namespace, body) in bodies.items():
            custom.create_namespaced_custom_object(
                ref.group, ref.version, namespace, ref.plural, body
            )
        try:
            yield {ref: (ns, body["metadata"]["name"]) for ref, (ns, body) in bodies.items()}
        finally:
            for ref in (owned.APPLICATION, owned.APPLICATION_SET):
                namespace, body = bodies[ref]
                try:
                    custom.delete_namespaced_custom_object(
                        ref.group, ref.version, namespace, ref.plural, body["metadata"]["name"]
                    )
                except client.ApiException as exc:
                    if exc.status != 404:  # gone already: a test that should not have
                        raise


def test_worker_acts_on_owners_with_exactly_their_roles(
    kube, kube_namespace, owner_rights, owner_objects
):
    worker = owned.Objects(kube.api_client(owner_rights["worker"]))
    app_ns, app = owner_objects[owned.APPLICATION]
    # RBAC is cached by the apiserver: wait until the new roles are in force.
    wait_for(lambda: denied(lambda: worker.get(owned.APPLICATION, app_ns, app)) == 0)

    # Argo CD, in its namespace: read, freeze auto-sync, set the rollback (merge patches).
    assert app in [a["metadata"]["name"] for a in worker.all(owned.APPLICATION, ARGOCD)]
    freeze = {
        "metadata": {"annotations": {"backstop.io/frozen": "test"}},
        "spec": {"syncPolicy": None},
    }
    frozen = worker.merge(owned.APPLICATION, app_ns, app, freeze)
    assert "syncPolicy" not in frozen["spec"] and by_backstop(frozen)
    appset_ns, appset_name = owner_objects[owned.APPLICATION_SET]
    assert worker.get(owned.APPLICATION_SET, appset_ns, appset_name)
    assert worker.all(owned.APPLICATION_SET, ARGOCD)
    paused = {"metadata": {"annotations": {"backstop.io/frozen": "test"}}}
    assert by_backstop(worker.merge(owned.APPLICATION_SET, appset_ns, appset_name, paused))

    # Flux, in any namespace: read and suspend; GitRepositories are only read.
    for ref in (owned.KUSTOMIZATION, owned.HELM_RELEASE, owned.IMAGE_UPDATE):
        namespace, name = owner_objects[ref]
        assert worker.get(ref, namespace, name)["metadata"]["name"] == name
        assert name in [o["metadata"]["name"] for o in worker.all(ref)]  # cluster-wide
        suspended = worker.merge(ref, namespace, name, {"spec": {"suspend": True}})
        assert suspended["spec"]["suspend"] is True and by_backstop(suspended), ref
    source_ns, source = owner_objects[owned.GIT_REPOSITORY]
    assert worker.get(owned.GIT_REPOSITORY, source_ns, source)
    assert worker.all(owned.GIT_REPOSITORY, source_ns)

    # Helm's release Secrets, in a namespace the example RoleBinding grants.
    with kube.api_client() as admin:
        bind_helm_secrets(admin, kube_namespace)
    first = release_secret("shop", 1)
    wait_for(lambda: denied(lambda: worker.secrets(kube_namespace, {"owner": "helm"})) == 0)
    worker.create_secret(kube_namespace, first)
    worker.create_secret(kube_namespace, release_secret("shop", 2))
    found = worker.secrets(kube_namespace, {"owner": "helm", "name": "shop"})
    assert sorted(s["metadata"]["name"] for s in found) == [
        "sh.helm.release.v1.shop.v1",
        "sh.helm.release.v1.shop.v2",
    ]
    superseded = {"metadata": {"labels": {"status": "superseded"}}}
    patched = worker.merge_secret(kube_namespace, first["metadata"]["name"], superseded)
    assert patched["metadata"]["labels"]["status"] == "superseded" and by_backstop(patched)
    with kube.api_client(owner_rights["worker"]) as api:
        read = client.CoreV1Api(api).read_namespaced_secret(
            first["metadata"]["name"], kube_namespace
        )
    assert read.metadata.labels["status"] == "superseded"


def test_nothing_beyond_the_owner_roles(kube, kube_namespace, owner_rights, owner_objects):
    worker_api = kube.api_client(owner_rights["worker"])
    watcher_api = kube.api_client(owner_rights["watcher"])
    worker, custom = owned.Objects(worker_api), client.CustomObjectsApi(worker_api)
    core = client.CoreV1Api(worker_api)
    app_ns, app = owner_objects[owned.APPLICATION]
    source_ns, source = owner_objects[owned.GIT_REPOSITORY]
    kustomization_ns, kustomization = owner_objects[owned.KUSTOMIZATION]
    granted, other = kube_namespace, f"{kube_namespace}-other"
    with kube.api_client() as admin:
        admin_core = client.CoreV1Api(admin)
        admin_core.create_namespace({"metadata": {"name": other}})
        bind_helm_secrets(admin, granted)
        for namespace in (granted, other):
            admin_core.create_namespaced_secret(namespace, release_secret("shop", 1))
        admin_apps = client.CustomObjectsApi(admin)
        admin_apps.create_namespaced_custom_object(
            "argoproj.io",
            "v1alpha1",
            granted,
            "applications",
            argocd.application("stray", "https://git.example/shop", namespace="shop"),
        )
    wait_for(lambda: denied(lambda: worker.secrets(granted, {"owner": "helm"})) == 0)
    secret = "sh.helm.release.v1.shop.v1"
    new_app = argocd.application("made-up", "https://git.example/x", namespace="shop")
    group = ("argoproj.io", "v1alpha1")
    calls = {
        "delete an Application": lambda: custom.delete_namespaced_custom_object(
            *group, app_ns, "applications", app
        ),
        "create an Application": lambda: custom.create_namespaced_custom_object(
            *group, app_ns, "applications", new_app
        ),
        "read an Application outside Argo CD's namespace": lambda: worker.get(
            owned.APPLICATION, granted, "stray"
        ),
        "list Applications cluster-wide": lambda: worker.all(owned.APPLICATION),
        "patch a GitRepository": lambda: worker.merge(
            owned.GIT_REPOSITORY, source_ns, source, {"spec": {"suspend": True}}
        ),
        "delete a Kustomization": lambda: custom.delete_namespaced_custom_object(
            "kustomize.toolkit.fluxcd.io", "v1", kustomization_ns, "kustomizations", kustomization
        ),
        "create a Secret in a namespace not granted": lambda: worker.create_secret(
            other, release_secret("shop", 2)
        ),
        "patch a Secret in a namespace not granted": lambda: worker.merge_secret(
            other, secret, {"metadata": {"labels": {"status": "superseded"}}}
        ),
        "list Secrets in a namespace not granted": lambda: worker.secrets(other, {"owner": "helm"}),
        "list Secrets cluster-wide": lambda: core.list_secret_for_all_namespaces(),
        "delete a Secret in a namespace granted": lambda: core.delete_namespaced_secret(
            secret, granted
        ),
        "the watcher reads an Application": lambda: owned.Objects(watcher_api).get(
            owned.APPLICATION, app_ns, app
        ),
        "the watcher reads a Secret": lambda: client.CoreV1Api(watcher_api).read_namespaced_secret(
            secret, granted
        ),
    }
    try:
        assert {what: denied(call) for what, call in calls.items()} == dict.fromkeys(calls, 403)
    finally:
        with kube.api_client() as admin:
            client.CoreV1Api(admin).delete_namespace(other)
