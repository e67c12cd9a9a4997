"""deploy/: every manifest builds with kustomize (`kubectl kustomize`) and passes the real
apiserver's server-side dry-run, and what is built keeps deploy/README.md's promises:
no RBAC wildcards, locked-down containers, network policies that admit only the senders
and the scraper, the Procfile's commands, alerts on metrics that exist.

kubectl is `$BACKSTOP_TEST_KUBECTL`, else the one on PATH: kubectl 1.22 or newer (kustomize
v4.1 or newer, for `labels` and `patches`; Debian bookworm's kubernetes-client, 1.20, is too
old). The ServiceMonitor and PrometheusRule CRDs are installed
(minimal ones, tests/manifests/) only where the cluster has none, and the `backstop`
namespace is created only when missing (a server-side dry-run cannot create objects in a
namespace that does not exist yet); both are removed afterwards, and only if created here.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from config.policy import load_policy
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BUILDS = ("base", "overlays/with-redis", "overlays/production")
# The worker's rights over owners (Argo CD, Flux, Helm): built and applied on their own,
# after a build above; the example binds the Helm Secrets role in one namespace.
OWNERS = "owners"
OWNER_EXAMPLES = ("examples/helm-release-secrets.yaml",)
# Applied as they are, never through kustomize (a placeholder Secret must not overwrite the
# real one on `kubectl apply -k`).
PLAIN = ("base/secret.example.yaml",)
# The admission webhook's configuration (docs/quarantine.md): applied on its own.
ADMISSION = "examples/admission.yaml"
# Validated, against the CRDs they need, by tests/integration/test_gate_examples.py.
EXAMPLES = (
    "examples/flagger-canary.yaml",
    "examples/argo-rollouts.yaml",
    "examples/networkpolicy-gates.yaml",
)
SECRET_TEMPLATE = DEPLOY / "base" / "secret.example.yaml"
CRDS = ROOT / "tests" / "manifests" / "prometheus-operator-crds.yaml"
NAMESPACE = "backstop"
COMPONENTS = ("receiver", "worker", "watcher")
REQUIRED_SECRETS = {"BACKSTOP_WEBHOOK_TOKEN", "BACKSTOP_API_TOKEN", "REDIS_URL"}
IN_CLUSTER_REDIS = "redis://:$(REDIS_PASSWORD)@redis:6379/0"
POLICY_PATH = "/etc/backstop/backstop.yaml"
# Read by something other than Settings: gunicorn's config, prometheus_client, matplotlib,
# and Kubernetes itself (with-redis builds REDIS_URL from REDIS_PASSWORD).
OTHER_VARIABLES = {"PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY", "MPLCONFIGDIR", "REDIS_PASSWORD"}
# Kustomization fields deploy/ may use; kustomize deprecates (and warns about) the others.
KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "labels",
    "commonAnnotations",
    "resources",
    "patches",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "images",
    "replacements",
}
SENDERS = ("alertmanager", "grafana", "prometheus")
METRIC_DEFINITION = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary|GaugeMetricFamily|CounterMetricFamily)\(\s*\"(\w+)\""
)
SUFFIXES = {"Histogram": ("_bucket", "_sum", "_count"), "Summary": ("_sum", "_count")}


# --- kubectl -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory):
    """Run kubectl; fail the test with its stderr when it exits non-zero."""
    binary = os.environ.get("BACKSTOP_TEST_KUBECTL") or shutil.which("kubectl")
    if not binary:
        pytest.fail(
            "kubectl not found: install Debian's kubernetes-client (make system-deps) "
            "or set BACKSTOP_TEST_KUBECTL"
        )
    cache = tmp_path_factory.mktemp("kubectl-cache")  # fresh API discovery, none in ~/.kube

    def run(*args: str, stdin: str | None = None, kubeconfig: Path | None = None) -> str:
        command = [binary, *args]
        if kubeconfig is not None:
            command += [f"--kubeconfig={kubeconfig}", f"--cache-dir={cache}"]
        try:
            result = subprocess.run(
                command, input=stdin, capture_output=True, text=True, check=True, timeout=120
            )
        except subprocess.CalledProcessError as error:
            pytest.fail(
                f"{shlex.join(command)} exited {error.returncode}:\n{error.stderr}\n{error.stdout}"
            )
        return result.stdout

    return run


@pytest.fixture(scope="module")
def built(kubectl) -> dict[str, list[dict]]:
    """Each kustomization's output, as objects."""
    return {
        name: [doc for doc in yaml.safe_load_all(kubectl("kustomize", str(DEPLOY / name))) if doc]
        for name in (*BUILDS, OWNERS)
    }


@dataclass
class Cluster:
    kubeconfig: Path
    api_versions: set[str]

    def servable(self, documents: list[dict]) -> list[dict]:
        """The documents as this apiserver takes them: PodDisruptionBudgets are policy/v1
        (Kubernetes >= 1.21); the 1.20 test apiserver has the same fields as v1beta1."""
        if "policy/v1" in self.api_versions:
            return documents
        served = copy.deepcopy(documents)
        for doc in served:
            if doc["kind"] == "PodDisruptionBudget" and doc["apiVersion"] == "policy/v1":
                doc["apiVersion"] = "policy/v1beta1"
        return served


@pytest.fixture(scope="module")
def cluster(kube, kubectl):
    """The test cluster with the monitoring CRDs and the `backstop` namespace in place."""
    created_namespace = False
    with kube.crds(CRDS), kube.api_client() as api:
        core = client.CoreV1Api(api)
        try:
            core.create_namespace(yaml.safe_load((DEPLOY / "base" / "namespace.yaml").read_text()))
            created_namespace = True
        except client.ApiException as error:
            if error.status != 409:
                raise
        try:
            versions = kubectl("api-versions", kubeconfig=kube.kubeconfig).split()
            yield Cluster(kube.kubeconfig, set(versions))
        finally:
            if created_namespace:
                core.delete_namespace(NAMESPACE)
                # Gone before other modules (test_rbac) create it again.
                wait_for(lambda: _gone(core, NAMESPACE), timeout=120, message="namespace deleted")


def _gone(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except client.ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


# --- helpers -------------------------------------------------------------------------------


def objects(documents: list[dict], kind: str) -> list[dict]:
    return [doc for doc in documents if doc["kind"] == kind]


def one(documents: list[dict], kind: str, name: str) -> dict:
    found = [doc for doc in objects(documents, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workloads(documents: list[dict]) -> list[dict]:
    return [doc for doc in documents if doc["kind"] in ("Deployment", "StatefulSet")]


def backstop(documents: list[dict], component: str) -> dict:
    return one(documents, "Deployment", f"backstop-{component}")


def container(workload: dict) -> dict:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


def env(workload: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container(workload).get("env", [])}


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def policies_for(documents: list[dict], labels: dict) -> list[dict]:
    return [
        p for p in objects(documents, "NetworkPolicy") if selects(p["spec"]["podSelector"], labels)
    ]


def admits(policies: list[dict], labels: dict, port: int) -> bool:
    """Would these policies let a pod with `labels` (in any namespace) reach `port`?"""
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            if any(selects(peer.get("podSelector", {}), labels) for peer in rule["from"]):
                return True
    return False


def secret_refs(documents: list[dict]) -> list[tuple[str, dict]]:
    """(variable name, secretKeyRef) of every container."""
    return [
        (item["name"], item["valueFrom"]["secretKeyRef"])
        for workload in workloads(documents)
        for item in container(workload).get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    ]


def procfile() -> dict[str, list[str]]:
    entries = (line.partition(": ") for line in (ROOT / "Procfile").read_text().splitlines())
    return {name: shlex.split(command) for name, _, command in entries}


def kustomization_files(directory: Path) -> set[Path]:
    """The kustomization and every file it (and its bases) reads."""
    directory = directory.resolve()
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    assert not unknown, f"{directory}: deprecated or unexpected kustomization fields: {unknown}"
    files = {directory / "kustomization.yaml"}
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        files |= kustomization_files(path) if path.is_dir() else {path}
    files |= {(directory / p["path"]).resolve() for p in kustomization.get("patches", [])}
    for generator in kustomization.get("configMapGenerator", []):
        for entry in generator.get("files", []):
            files.add((directory / entry.split("=")[-1]).resolve())
    return files


def exported_metrics() -> set[str]:
    """Every series name receiver/metrics.py exports (with histogram suffixes)."""
    source = (ROOT / "receiver" / "metrics.py").read_text()
    names = set()
    for kind, name in METRIC_DEFINITION.findall(source):
        names.add(name)
        names |= {name + suffix for suffix in SUFFIXES.get(kind, ())}
    return names


# --- what is there, and that the apiserver takes it -----------------------------------------


def test_every_manifest_is_built_or_applied():
    """No file under deploy/ escapes validation; no kustomization uses deprecated fields."""
    covered = set().union(*(kustomization_files(DEPLOY / build) for build in (*BUILDS, OWNERS)))
    covered |= {
        (DEPLOY / path).resolve() for path in (*PLAIN, *EXAMPLES, *OWNER_EXAMPLES, ADMISSION)
    }
    manifests = {p.resolve() for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml")}
    assert manifests - covered == set()


@pytest.mark.parametrize("build", BUILDS)
def test_server_side_dry_run(build, built, cluster, kubectl):
    documents = cluster.servable(built[build])
    output = kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(documents),
        kubeconfig=cluster.kubeconfig,
    )
    applied = [line for line in output.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(documents), output


def test_the_admission_webhook_configuration_dry_run(cluster, kubectl):
    """It names the receiver's Service and path, fails open, and the API server takes it."""
    webhook = yaml.safe_load((DEPLOY / ADMISSION).read_text())
    [hook] = webhook["webhooks"]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["clientConfig"]["service"]["path"] == "/admission/validate"
    output = kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        str(DEPLOY / ADMISSION),
        kubeconfig=cluster.kubeconfig,
    )
    assert "(server dry run)" in output, output


def test_secret_template_dry_run_with_placeholders_only(cluster, kubectl):
    output = kubectl(
        "apply", "--dry-run=server", "-f", str(SECRET_TEMPLATE), kubeconfig=cluster.kubeconfig
    )
    assert "secret/backstop" in output and "(server dry run)" in output
    secret = yaml.safe_load(SECRET_TEMPLATE.read_text())
    assert "data" not in secret
    assert all(value.startswith("REPLACE_ME") for value in secret["stringData"].values())


# --- least privilege and locked-down pods ------------------------------------------------------


@pytest.mark.parametrize("build", BUILDS)
def test_no_wildcards_in_any_role(build, built):
    roles = objects(built[build], "ClusterRole") + objects(built[build], "Role")
    names = {role["metadata"]["name"] for role in roles}
    assert {"backstop-worker", "backstop-watcher", "backstop-watcher-leader-election"} <= names
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in value for value in rule.get(field, [])), (role, rule)


@pytest.mark.parametrize("build", BUILDS)
def test_every_container_is_locked_down(build, built):
    found = workloads(built[build])
    assert {w["metadata"]["name"] for w in found} >= {f"backstop-{c}" for c in COMPONENTS}
    for workload in found:
        spec = workload["spec"]["template"]["spec"]
        pod = spec.get("securityContext", {})
        assert not any(spec.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
        for item in spec["containers"] + spec.get("initContainers", []):
            context = {**pod, **item.get("securityContext", {})}
            where = f"{workload['metadata']['name']}/{item['name']}"
            assert context.get("runAsNonRoot") is True, where
            assert context.get("runAsUser", 0) != 0, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("privileged", False) is False, where
            assert "ALL" in context.get("capabilities", {}).get("drop", []), where
            assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(item["resources"][bound]), where


@pytest.mark.parametrize("build", BUILDS)
def test_backstop_writes_only_to_empty_dirs(build, built):
    """The root filesystem is read-only: /tmp and the metrics directory are emptyDirs."""
    for component in COMPONENTS:
        workload = backstop(built[build], component)
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container(workload)["volumeMounts"]}
        assert "emptyDir" in mounts["/tmp"], component
        directory = env(workload).get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            assert "emptyDir" in mounts[directory["value"]], component
    assert "PROMETHEUS_MULTIPROC_DIR" in env(backstop(built[build], "receiver"))


# --- network policies ----------------------------------------------------------------------


@pytest.mark.parametrize("build", BUILDS)
def test_network_policy_admits_only_senders_and_scraper_to_the_receiver(build, built):
    documents = built[build]
    labels = pod_labels(backstop(documents, "receiver"))
    policies = policies_for(documents, labels)
    assert policies, "no NetworkPolicy selects the receiver"
    assert all("Ingress" in p["spec"]["policyTypes"] for p in policies)
    rules = [rule for p in policies for rule in p["spec"].get("ingress", [])]
    assert rules and all(rule.get("from") for rule in rules)  # no rule open to everyone
    for rule in rules:
        assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            assert peer["namespaceSelector"] == {}  # the senders' namespaces vary
    for sender in SENDERS:
        assert admits(policies, {"app.kubernetes.io/name": sender, "other": "x"}, 8080)
    for stranger in (
        {},
        {"app.kubernetes.io/name": "curl"},
        pod_labels(backstop(documents, "worker")),
    ):
        assert not admits(policies, stranger, 8080), stranger
    receiver_port = container(backstop(documents, "receiver"))["ports"][0]["containerPort"]
    assert receiver_port == 8080


@pytest.mark.parametrize("build", BUILDS)
def test_workers_and_watcher_accept_no_ingress(build, built):
    for component in ("worker", "watcher"):
        policies = policies_for(built[build], pod_labels(backstop(built[build], component)))
        assert policies, component
        assert all("Ingress" in p["spec"]["policyTypes"] for p in policies)
        assert not any(p["spec"].get("ingress") for p in policies), component


def test_with_redis_only_backstop_reaches_redis(built):
    documents = built["overlays/with-redis"]
    redis = one(documents, "StatefulSet", "redis")
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    service = one(documents, "Service", "redis")
    assert service["spec"]["ports"][0]["port"] == 6379
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(redis))
    policies = policies_for(documents, pod_labels(redis))
    assert policies and all("Ingress" in p["spec"]["policyTypes"] for p in policies)
    for policy in policies:
        for rule in policy["spec"]["ingress"]:
            assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
            for peer in rule["from"]:  # pods of Backstop's own namespace, by label only
                assert set(peer) == {"podSelector"}, peer
    for component in COMPONENTS:
        assert admits(policies, pod_labels(backstop(documents, component)), 6379), component
    for stranger in (
        {},
        {"app.kubernetes.io/name": "alertmanager"},
        {"app.kubernetes.io/name": "backstop"},
        {"app.kubernetes.io/name": "backstop", "app.kubernetes.io/component": "debug"},
        {"app.kubernetes.io/part-of": "backstop", "app.kubernetes.io/component": "worker"},
        pod_labels(redis),
    ):
        assert not admits(policies, stranger, 6379), stranger


def test_with_redis_has_a_password_from_the_secret_never_on_a_command_line(built):
    """Redis's requirepass comes from the `backstop` Secret's REDIS_PASSWORD through its
    environment and its stdin; Backstop's pods build REDIS_URL from the same key."""
    documents = built["overlays/with-redis"]
    item = container(one(documents, "StatefulSet", "redis"))
    variables = env(one(documents, "StatefulSet", "redis"))
    assert variables["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "backstop",
        "key": "REDIS_PASSWORD",
    }
    assert variables["REDISCLI_AUTH"]["value"] == "$(REDIS_PASSWORD)"  # the probe's redis-cli
    assert "args" not in item
    shell, flag, script = item["command"]
    assert (shell, flag) == ("/bin/sh", "-c")
    # redis-server reads its configuration from stdin (`-`), a here-document with the
    # password; the options on its command line are not secret.
    assert script.startswith("exec redis-server - ")
    assert 'requirepass "$REDISCLI_AUTH"' in script.splitlines()
    assert "$(REDIS_PASSWORD)" not in script  # Kubernetes would expand it onto the command line
    options = shlex.split(script.split("<<")[0].replace("\\\n", " "))
    assert options[options.index("--appendonly") + 1] == "yes"
    assert options[options.index("--maxmemory-policy") + 1] == "noeviction"
    assert options[options.index("--protected-mode") + 1] == "yes"
    assert item["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    for component in COMPONENTS:
        names = [variable["name"] for variable in container(backstop(documents, component))["env"]]
        variables = env(backstop(documents, component))
        assert variables["REDIS_URL"] == {"name": "REDIS_URL", "value": IN_CLUSTER_REDIS}
        assert variables["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "REDIS_PASSWORD"
        # Kubernetes expands $(VAR) only for variables defined before.
        assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL"), component


# --- what the pods run, and with what ----------------------------------------------------------


@pytest.mark.parametrize("build", BUILDS)
def test_processes_are_the_procfiles(build, built):
    """The receiver runs the Procfile's gunicorn; worker and watcher its `backstop` commands
    (the image's entrypoint is `backstop`)."""
    commands = procfile()
    receiver = container(backstop(built[build], "receiver"))
    assert receiver["command"] == commands["web"] and "args" not in receiver
    for component, name in (("worker", "worker"), ("watcher", "watcher")):
        item = container(backstop(built[build], component))
        assert "command" not in item
        assert ["backstop", *item["args"]] == commands[name]


@pytest.mark.parametrize("build", BUILDS)
def test_receiver_serves_probes_and_service_on_its_port(build, built):
    documents = built[build]
    receiver = backstop(documents, "receiver")
    item = container(receiver)
    assert env(receiver)["BACKSTOP_BIND"]["value"] == "0.0.0.0:8080"
    assert item["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert item["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert item["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = one(documents, "Service", "backstop-receiver")
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(receiver))
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert receiver["spec"]["replicas"] >= 2


@pytest.mark.parametrize("build", BUILDS)
def test_disruption_budgets_keep_one_of_each(build, built):
    budgets = objects(built[build], "PodDisruptionBudget")
    for component in COMPONENTS:
        labels = pod_labels(backstop(built[build], component))
        mine = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert [b["spec"]["minAvailable"] for b in mine] == [1], component


@pytest.mark.parametrize("build", BUILDS)
def test_policy_comes_from_the_config_map(build, built, tmp_path):
    documents = built[build]
    maps = [m for m in objects(documents, "ConfigMap") if "backstop.yaml" in m.get("data", {})]
    assert len(maps) == 1
    text = maps[0]["data"]["backstop.yaml"]
    assert yaml.safe_load(text) == yaml.safe_load((ROOT / "config" / "backstop.yaml").read_text())
    (tmp_path / "backstop.yaml").write_text(text)
    assert load_policy(tmp_path / "backstop.yaml").mode == "dry-run"
    for component in COMPONENTS:
        workload = backstop(documents, component)
        assert env(workload)["BACKSTOP_CONFIG"]["value"] == POLICY_PATH
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m for m in container(workload)["volumeMounts"]}
        mount = mounts[str(Path(POLICY_PATH).parent)]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["configMap"]["name"] == maps[0]["metadata"]["name"]


@pytest.mark.parametrize("build", BUILDS)
def test_secrets_come_from_the_documented_secret(build, built):
    template = set(yaml.safe_load(SECRET_TEMPLATE.read_text())["stringData"])
    refs = secret_refs(built[build])
    assert {ref["name"] for _, ref in refs} == {"backstop"}
    assert all(variable == ref["key"] for variable, ref in refs)
    used = {ref["key"] for _, ref in refs}
    assert used <= template and template <= used | {"REDIS_URL", "REDIS_PASSWORD"}
    required = {ref["key"] for _, ref in refs if not ref.get("optional")}
    expected = REQUIRED_SECRETS
    if build.endswith("with-redis"):  # the in-cluster Redis's password instead of a URL
        expected = REQUIRED_SECRETS - {"REDIS_URL"} | {"REDIS_PASSWORD"}
    assert required == expected


@pytest.mark.parametrize("build", BUILDS)
def test_every_variable_is_one_backstop_reads(build, built):
    """A misspelt variable would be ignored silently (Settings ignores unknown ones)."""
    from config.settings import Settings

    known = OTHER_VARIABLES | {
        alias
        for field in Settings.model_fields.values()
        for alias in getattr(field.validation_alias, "choices", ())
    }
    names = {
        name
        for workload in workloads(built[build])
        if workload["metadata"]["name"].startswith("backstop-")
        for name in env(workload)
    }
    for config_map in objects(built[build], "ConfigMap"):
        if config_map["metadata"]["name"].startswith("backstop-env"):
            names |= set(config_map["data"])
    assert names - known == set()


@pytest.mark.parametrize("build", BUILDS)
def test_several_watchers_only_with_leader_election(build, built):
    watcher = backstop(built[build], "watcher")
    if watcher["spec"]["replicas"] > 1:
        election = env(watcher)["BACKSTOP_LEADER_ELECTION_NAMESPACE"]
        assert election["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_production_scales_out(built):
    documents = built["overlays/production"]
    base = built["base"]
    for component in ("receiver", "worker"):
        workload = backstop(documents, component)
        assert workload["spec"]["replicas"] == 3
        assert container(workload)["resources"] != container(backstop(base, component))["resources"]
        assert not container(workload)["image"].startswith("backstop:")


# --- monitoring ----------------------------------------------------------------------------


def test_alert_rules_parse_and_use_only_exported_metrics(built, tmp_path):
    documents = built["base"]
    rule = one(documents, "PrometheusRule", "backstop")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool not found: install Debian's prometheus (make system-deps)")
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    expressions = [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    used = {name for expr in expressions for name in re.findall(r"\bbackstop_\w+", expr)}
    assert used and used <= exported_metrics(), used - exported_metrics()
    # The job label is the scraped Service's name (prometheus-operator's default).
    monitor = one(documents, "ServiceMonitor", "backstop-receiver")
    service = one(documents, "Service", "backstop-receiver")
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    jobs = {job for expr in expressions for job in re.findall(r'job="([^"]+)"', expr)}
    assert jobs == {service["metadata"]["name"]}


# --- the watcher's Lease rights, for real ---------------------------------------------------------


def test_watcher_role_allows_its_lease_and_no_other(kube, kube_namespace, built):
    """Elect with the watcher's own token under exactly leader-election.yaml's Role (in a
    fresh namespace): create, renew, hand over; nothing on another Lease."""
    from core.integrations.lease import Lease
    from core.records import utcnow

    documents = built["base"]
    name = env(backstop(documents, "watcher"))["BACKSTOP_LEADER_ELECTION_NAME"]["value"]
    role = copy.deepcopy(one(documents, "Role", "backstop-watcher-leader-election"))
    binding = copy.deepcopy(one(documents, "RoleBinding", "backstop-watcher-leader-election"))
    for doc in (role, binding):
        doc["metadata"]["namespace"] = kube_namespace
    for subject in binding["subjects"]:
        subject["namespace"] = kube_namespace
    with kube.api_client() as api:
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(kube_namespace, role)
        rbac.create_namespaced_role_binding(kube_namespace, binding)
    token = kube.service_account_token(kube_namespace, binding["subjects"][0]["name"])
    with kube.api_client(token) as api:

        def candidate(identity: str, lease: str = name) -> Lease:
            return Lease(
                api, kube_namespace, lease, identity, duration=timedelta(seconds=30), clock=utcnow
            )

        first, second = candidate("first"), candidate("second")
        assert wait_for(lambda: _granted(first.acquire_or_renew), message="lease created")
        assert first.acquire_or_renew()  # renewed: get + update
        assert not second.acquire_or_renew()  # held, and fresh
        first.release()
        assert second.acquire_or_renew()  # handed over
        with pytest.raises(client.ApiException) as denied:
            candidate("third", lease="someone-else").acquire_or_renew()
        assert denied.value.status == 403
        with pytest.raises(client.ApiException) as denied:
            second.coordination.delete_namespaced_lease(name, kube_namespace)
        assert denied.value.status == 403


def _granted(call) -> bool:
    """Call; False while RBAC has not caught up with the new Role (403)."""
    try:
        return call()
    except client.ApiException as error:
        if error.status == 403:
            return False
        raise


# --- the worker's rights over owners (deploy/owners) ---------------------------------------

WORKER = {"kind": "ServiceAccount", "name": "backstop-worker", "namespace": NAMESPACE}
# Role or ClusterRole -> (kind, namespace or None, the rules as (group, resource, verbs)):
# exactly what deploy/README.md ("Owners") promises, one object per policy switch.
OWNER_ROLES = {
    "backstop-worker-argocd": (
        "Role",
        "argocd",
        {("argoproj.io", "applications", ("get", "list", "patch"))},
    ),
    "backstop-worker-argocd-parents": (
        "Role",
        "argocd",
        {("argoproj.io", "applicationsets", ("get", "list", "patch"))},
    ),
    "backstop-worker-flux-kustomizations": (
        "ClusterRole",
        None,
        {
            ("kustomize.toolkit.fluxcd.io", "kustomizations", ("get", "list", "patch")),
            ("source.toolkit.fluxcd.io", "gitrepositories", ("get", "list")),
        },
    ),
    "backstop-worker-flux-helmreleases": (
        "ClusterRole",
        None,
        {
            ("helm.toolkit.fluxcd.io", "helmreleases", ("get", "list", "patch")),
            ("source.toolkit.fluxcd.io", "gitrepositories", ("get", "list")),
        },
    ),
    "backstop-worker-flux-image-automation": (
        "ClusterRole",
        None,
        {("image.toolkit.fluxcd.io", "imageupdateautomations", ("get", "list", "patch"))},
    ),
    "backstop-worker-helm-release-secrets": (
        "ClusterRole",
        None,
        {("", "secrets", ("create", "get", "list", "patch"))},
    ),
}
SECRETS_ROLE = "backstop-worker-helm-release-secrets"


def rule_set(role: dict) -> set[tuple[str, str, tuple[str, ...]]]:
    return {
        (group, resource, tuple(sorted(rule["verbs"])))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def owner_documents(built) -> list[dict]:
    examples = [yaml.safe_load((DEPLOY / path).read_text()) for path in OWNER_EXAMPLES]
    return built[OWNERS] + examples


def test_owner_roles_grant_exactly_what_the_readme_says(built):
    documents = owner_documents(built)
    roles = objects(documents, "Role") + objects(documents, "ClusterRole")
    found = {
        role["metadata"]["name"]: (
            role["kind"],
            role["metadata"].get("namespace"),
            rule_set(role),
        )
        for role in roles
    }
    assert found == OWNER_ROLES
    for role in roles:
        for rule in role["rules"]:
            assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), role
            assert not any("*" in v for f in ("apiGroups", "resources", "verbs") for v in rule[f])
    readme = (DEPLOY / "README.md").read_text()
    assert all(name in readme for name in OWNER_ROLES)


def test_owner_bindings_name_the_worker_only_and_secrets_never_cluster_wide(built):
    documents = owner_documents(built)
    bindings = objects(documents, "RoleBinding") + objects(documents, "ClusterRoleBinding")
    bound = {}
    for binding in bindings:
        assert binding["subjects"] == [WORKER], binding
        name = binding["roleRef"]["name"]
        kind, namespace, _ = OWNER_ROLES[name]
        assert binding["roleRef"]["kind"] == kind
        if kind == "Role":  # a Role is bound where it lives
            assert (binding["kind"], binding["metadata"]["namespace"]) == ("RoleBinding", namespace)
        bound.setdefault(name, []).append(binding["kind"])
    assert set(bound) == set(OWNER_ROLES)
    # The Secrets role: bound per namespace by the example, never by deploy/owners itself.
    assert bound[SECRETS_ROLE] == ["RoleBinding"]
    assert all(
        b["roleRef"]["name"] != SECRETS_ROLE for b in built[OWNERS] if "Binding" in b["kind"]
    )


@pytest.fixture
def owner_namespaces(cluster, kube):
    """Argo CD's namespace and the example's `shop`, where missing (removed afterwards)."""
    created = []
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        for name in ("argocd", "shop"):
            try:
                core.create_namespace({"metadata": {"name": name}})
                created.append(name)
            except client.ApiException as error:
                if error.status != 409:
                    raise
        try:
            yield cluster
        finally:
            for name in created:
                core.delete_namespace(name)
            for name in created:
                wait_for(lambda n=name: _gone(core, n), timeout=120, message=f"{name} deleted")


def test_owner_roles_server_side_dry_run(built, owner_namespaces, kubectl):
    documents = owner_documents(built)
    output = kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(documents),
        kubeconfig=owner_namespaces.kubeconfig,
    )
    applied = [line for line in output.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(documents), output
