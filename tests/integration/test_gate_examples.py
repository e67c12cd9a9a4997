"""deploy/examples/: the Flagger Canary and the Argo Rollouts AnalysisTemplate that ask
Backstop's gates pass the test apiserver's server-side dry-run with the CRDs applied (typed
stand-ins, tests/manifests/progressive-delivery-crds.yaml: nothing may be pruned), step
5% -> 20% -> 50% -> 100% through the gate, and the URLs they call really answer."""

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from config.policy import Policy
from receiver.app import create_app
from tests import samples
from tests.conftest import wait_for
from tests.secrets import GATE_TOKEN

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "deploy" / "examples"
MANIFESTS = ROOT / "tests" / "manifests"
CRD_FILES = ("progressive-delivery-crds.yaml", "argo-rollouts-crd.yaml")
GATE_PATH = re.compile(r"^/api/v1/gates/(?P<namespace>[^/]+)/(?P<name>[^/?]+)$")


def documents(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text()) if doc]


def one(docs: list[dict], kind: str) -> dict:
    [found] = [doc for doc in docs if doc["kind"] == kind]
    return found


@pytest.fixture(scope="module")
def crds(kube):
    """The CRDs the examples need (other modules use the Rollout one and keep it)."""
    with kube.crds(*(MANIFESTS / name for name in CRD_FILES), keep=("rollouts.argoproj.io",)):
        yield


def dry_run(kube, namespace: str, docs: list[dict]) -> list[dict]:
    """Server-side dry-run of the documents moved into `namespace`; what the server kept."""
    kubectl = os.environ.get("BACKSTOP_TEST_KUBECTL") or shutil.which("kubectl")
    moved = copy.deepcopy(docs)
    for doc in moved:
        doc["metadata"]["namespace"] = namespace
    command = [kubectl, f"--kubeconfig={kube.kubeconfig}", "apply", "--dry-run=server"]
    command += ["-o", "json", "-f", "-"]

    def attempt():
        result = subprocess.run(
            command, input=yaml.safe_dump_all(moved), capture_output=True, text=True, timeout=60
        )
        # Right after a CRD is created, discovery may not know it for a moment.
        return result if "no matches for kind" not in result.stderr else None

    result = wait_for(attempt, timeout=30, message="the new kinds to be served")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    return answer["items"] if answer.get("kind") == "List" else [answer]


def pruned(given, kept, path="") -> list[str]:
    """Paths of `given` the server dropped or changed (unknown fields are pruned)."""
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [path or "/"]
        return [
            p for key, value in given.items() for p in pruned(value, kept.get(key), f"{path}/{key}")
        ]
    if isinstance(given, list):
        if not isinstance(kept, list) or len(kept) != len(given):
            return [path]
        return [p for i, value in enumerate(given) for p in pruned(value, kept[i], f"{path}/{i}")]
    return [] if given == kept else [path]


def test_these_are_the_examples_test_manifests_counts_on():
    from tests.integration.test_manifests import ADMISSION, OWNER_EXAMPLES
    from tests.integration.test_manifests import EXAMPLES as COUNTED

    # The owner examples are RBAC, not gates: test_manifests checks them against the roles;
    # and it dry-runs the admission webhook's configuration on its own.
    examples = {f"examples/{p.name}" for p in EXAMPLES.glob("*.yaml")}
    assert examples == {*COUNTED, *OWNER_EXAMPLES, ADMISSION}


@pytest.mark.parametrize("example", ["flagger-canary.yaml", "argo-rollouts.yaml"])
def test_each_example_passes_the_apiserver_unpruned(kube, crds, kube_namespace, example):
    docs = documents(example)
    kept = dry_run(kube, kube_namespace, docs)
    assert [doc["kind"] for doc in kept] == [doc["kind"] for doc in docs]
    for given, stored in zip(docs, kept, strict=True):
        if "/" not in given["apiVersion"] or given["apiVersion"].startswith("apps/"):
            continue  # built-in kinds: the apiserver validates them itself (and a Secret's
            # stringData comes back as data)
        spec = {k: v for k, v in given.items() if k not in ("metadata", "apiVersion")}
        assert pruned(spec, stored) == [], f"{given['kind']}: fields the server did not keep"


def test_the_network_policy_example_admits_the_controllers_to_the_receiver(kube, kube_namespace):
    [policy] = documents("networkpolicy-gates.yaml")
    [kept] = dry_run(kube, kube_namespace, [policy])
    assert pruned(policy["spec"], kept["spec"]) == []
    base = next(
        doc
        for doc in yaml.safe_load_all((ROOT / "deploy/base/networkpolicy.yaml").read_text())
        if doc and doc["metadata"]["name"] == "backstop-receiver"
    )
    assert policy["spec"]["podSelector"] == base["spec"]["podSelector"]
    [rule] = policy["spec"]["ingress"]
    [expression] = rule["from"][0]["podSelector"]["matchExpressions"]
    assert set(expression["values"]) == {"flagger", "argo-rollouts"}
    assert rule["ports"] == base["spec"]["ingress"][0]["ports"]


def receiver_address() -> str:
    """`<service>.<namespace>.svc:<port>` of the receiver as deploy/base defines it."""
    docs = yaml.safe_load_all((ROOT / "deploy/base/receiver.yaml").read_text())
    [service] = [doc for doc in docs if doc and doc["kind"] == "Service"]
    namespace = yaml.safe_load((ROOT / "deploy/base/namespace.yaml").read_text())
    port = service["spec"]["ports"][0]["port"]
    return f"{service['metadata']['name']}.{namespace['metadata']['name']}.svc:{port}"


@pytest.fixture
def gate_app(make_settings, webhook_headers):
    """The receiver with the gate token set and a recorded rollout of shop/checkout (as a
    Deployment for Flagger and as a Rollout for Argo)."""
    app = create_app(
        make_settings(gate_token=GATE_TOKEN),
        policy=Policy.model_validate({"mode": "dry-run"}),
    )
    web = app.test_client()
    for kind in ("Deployment", "Rollout"):
        event = samples.deployment_event(minutes_ago=10, kind=kind)
        answer = web.post("/webhooks/deployments", headers=webhook_headers, json=event)
        assert answer.status_code == 202
    return web


def test_flagger_asks_the_gate_at_every_step(gate_app):
    canary = one(documents("flagger-canary.yaml"), "Canary")
    analysis = canary["spec"]["analysis"]
    assert analysis["stepWeights"] == [5, 20, 50]  # and promotion to 100%
    hooks = analysis["webhooks"]
    assert {hook["type"] for hook in hooks} == {
        "pre-rollout",
        "rollout",
        "confirm-traffic-increase",
        "confirm-promotion",
    }
    for hook in hooks:
        url = urlsplit(hook["url"].replace("REPLACE_ME_gate_token", GATE_TOKEN))
        assert url.hostname + f":{url.port}" == receiver_address()
        target = GATE_PATH.match(url.path)
        assert target and (target["namespace"], target["name"]) == (
            canary["metadata"]["namespace"],
            canary["spec"]["targetRef"]["name"],
        )
        # Flagger's Go client sends the URL's user info as basic auth, and POSTs its payload.
        payload = {"name": "checkout", "namespace": "shop", "phase": "Progressing"}
        answer = gate_app.post(url.path, auth=(url.username, url.password), json=payload)
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["workload"]["kind"] == "Deployment"


def test_argo_rollouts_asks_the_gate_after_every_weight(gate_app):
    docs = documents("argo-rollouts.yaml")
    rollout, template = one(docs, "Rollout"), one(docs, "AnalysisTemplate")
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    weights = [step["setWeight"] for step in steps if "setWeight" in step]
    assert weights == [5, 20, 50, 100]
    for index, step in enumerate(steps):
        if "setWeight" in step:
            gate = steps[index + 1]["analysis"]
            assert gate["templates"] == [{"templateName": template["metadata"]["name"]}]
    [metric] = template["spec"]["metrics"]
    assert metric["failureLimit"] == 0 and metric["successCondition"] == "result == true"
    web = metric["provider"]["web"]
    # Argo fills in the args: the namespace from the Rollout, its name, the Secret's token.
    args = {"namespace": rollout["metadata"]["namespace"], "rollout": rollout["metadata"]["name"]}
    args["gate-token"] = GATE_TOKEN
    url = urlsplit(re.sub(r"\{\{args\.([\w-]+)\}\}", lambda m: args[m[1]], web["url"]))
    assert url.netloc == receiver_address()
    [header] = web["headers"]
    value = re.sub(r"\{\{args\.([\w-]+)\}\}", lambda m: args[m[1]], header["value"])
    answer = gate_app.get(f"{url.path}?{url.query}", headers={header["key"]: value})
    assert answer.status_code == 200, answer.get_json()
    assert parse_qs(url.query) == {"kind": ["Rollout"], "verdict": ["body"]}
    body = answer.get_json()
    assert web["jsonPath"] == "{$.healthy}" and body["healthy"] is True
    assert body["workload"]["kind"] == "Rollout"
