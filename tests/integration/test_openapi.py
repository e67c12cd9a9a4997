"""The OpenAPI document: served with the API's credentials, one operation per route of the
app and none more, committed copies current, answer models in step with what the routes
build, and the regressions schemathesis and the document's review found."""

import dataclasses
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import jsonschema_rs
import pytest

from config.policy import Policy
from core.records import RollbackStep
from core.registries import JobView
from core.store.episodes import Episode
from receiver import answers, apidoc
from receiver.app import create_app
from receiver.openapi import document
from receiver.operations import EXCLUDED_BLUEPRINTS, EXCLUDED_ENDPOINTS
from tests import samples

DOCS = Path(__file__).resolve().parents[2] / "docs"
CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def routes(app) -> set[tuple[str, str, str]]:
    """(OpenAPI path, method, endpoint) of every route but the excluded pages."""
    found = set()
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.rpartition(".")[0]
        if blueprint in EXCLUDED_BLUEPRINTS or rule.endpoint in EXCLUDED_ENDPOINTS:
            continue
        path = CONVERTER.sub(r"{\1}", rule.rule)
        for method in set(rule.methods or ()) - IGNORED_METHODS:
            found.add((path, method.lower(), rule.endpoint))
    return found


def documented() -> set[tuple[str, str, str]]:
    return {
        (path, method, op["operationId"].removesuffix(f".{method}"))
        for path, methods in document()["paths"].items()
        for method, op in methods.items()
    }


def test_every_route_is_documented_and_nothing_else(app):
    """A route without its operation fails, and so does an operation without its route."""
    have, said = routes(app), documented()
    assert have - said == set(), "routes missing from the OpenAPI document"
    assert said - have == set(), "operations the app does not have"


def test_excluded_routes_are_pages(app, client):
    """What the document leaves out is HTML for browsers (or static files)."""
    for blueprint in EXCLUDED_BLUEPRINTS:
        assert any(r.endpoint.startswith(f"{blueprint}.") for r in app.url_map.iter_rules())
    assert client.get("/login").mimetype == "text/html"


def test_document_is_served_with_the_api_credentials(client, api_headers):
    assert client.get("/api/v1/openapi.json").status_code == 401
    answer = client.get("/api/v1/openapi.json", headers=api_headers)
    assert answer.status_code == 200
    served = answer.get_json()
    assert served["openapi"] == "3.1.0" and served == json.loads(json.dumps(document()))


def test_committed_copies_are_current():
    """docs/openapi.json and docs/openapi.md are what `python -m receiver.openapi --write
    docs/` writes now: regenerate them when this fails."""
    for name, text in apidoc.files(document()).items():
        assert (DOCS / name).read_text(encoding="utf-8") == text, f"docs/{name} is stale"


def test_every_schema_is_valid_json_schema():
    for schema in document()["components"]["schemas"].values():
        jsonschema_rs.validator_for({**schema, "components": document()["components"]})


def test_answer_models_match_what_the_routes_build():
    """Views built from to_json() dicts have exactly the fields their models document."""
    now = datetime.now(UTC)
    step = RollbackStep(name="scale", status="ok", started_at=now, finished_at=now)
    assert set(step.to_json()) == set(answers.RollbackStepView.model_fields)
    assert {f.name for f in dataclasses.fields(JobView)} == set(answers.JobModel.model_fields)
    episode = Episode("e", "firing", "alertmanager", "A", "t", None, now, now, None, 1, {})
    assert set(episode.to_json()) == set(answers.EpisodeView.model_fields)


def validator(path: str, method: str, status: int):
    """A validator of one operation's documented answer body."""
    components = document()["components"]
    op = document()["paths"][path][method]
    schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
    return jsonschema_rs.validator_for({**schema, "components": components})


def test_answers_with_data_match_the_document(client, api_headers, webhook_headers):
    """With records stored, the lists and views match their schemas (schemathesis mostly
    sees an empty store)."""
    deploy = client.post(
        "/webhooks/deployments", json=samples.deployment_event(10), headers=webhook_headers
    )
    validator("/webhooks/deployments", "post", 202).validate(deploy.get_json())
    alert = client.post(
        "/webhooks/alertmanager",
        json=samples.kill_switch(),
        headers=webhook_headers,
    )
    validator("/webhooks/alertmanager", "post", 202).validate(alert.get_json())
    for path in ("/api/v1/alerts", "/api/v1/decisions", "/api/v1/deployments", "/api/v1/audit"):
        answer = client.get(path, headers=api_headers)
        validator(path, "get", 200).validate(answer.get_json())
    [decision] = client.get("/api/v1/decisions", headers=api_headers).get_json()["decisions"]
    one = client.get(f"/api/v1/decisions/{decision['id']}", headers=api_headers)
    validator("/api/v1/decisions/{decision_id}", "get", 200).validate(one.get_json())
    refused = client.get("/api/v1/alerts?limit=0", headers=api_headers)
    assert refused.status_code == 400
    validator("/api/v1/alerts", "get", 400).validate(refused.get_json())


# -- regressions -----------------------------------------------------------------------------


@pytest.fixture
def admission_client(make_settings):
    return create_app(make_settings(admission=True), policy=Policy()).test_client()


@pytest.mark.parametrize(
    "request_",
    [
        {"uid": "u", "kind": "Deployment", "operation": "CREATE"},
        {"uid": "u", "kind": {"kind": "Deployment"}, "operation": ["CREATE"]},
    ],
    ids=["kind-not-an-object", "operation-not-a-string"],
)
def test_admission_refuses_what_no_api_server_sends(admission_client, request_):
    """Found reviewing the document against the route: a `kind` that is not an object was a
    500 (AttributeError), now a 400 naming the field."""
    answer = admission_client.post("/admission/validate", json={"request": request_})
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "invalid_body"


@pytest.mark.parametrize(
    "obj",
    [
        {"spec": "x"},
        {"spec": {"template": ["x"]}},
        {"spec": {"template": {"spec": {"containers": 5}}}},
        {"spec": {"template": {"spec": {"initContainers": "abc"}}}},
    ],
    ids=["spec", "template", "containers", "init-containers"],
)
def test_admission_allows_objects_with_odd_pod_templates(admission_client, obj):
    """Found the same way: a pod template level that is not an object (or containers that are
    no list) was a 500; such an object brings in no image, so it is allowed."""
    review = {
        "request": {
            "uid": "u",
            "kind": {"kind": "Deployment"},
            "operation": "CREATE",
            "object": obj,
        }
    }
    answer = admission_client.post("/admission/validate", json=review)
    assert answer.status_code == 200
    assert answer.get_json()["response"] == {"uid": "u", "allowed": True}
    validator("/admission/validate", "post", 200).validate(answer.get_json())


def test_a_body_of_only_whitespace_is_invalid_json_not_an_empty_body(client, api_headers):
    # schemathesis: "\r\n" with a JSON content type was read as no body and acted on.
    headers = {**api_headers, "Content-Type": "application/json"}
    answer = client.post("/api/v1/automation/circuit/reset", headers=headers, data=b"\r\n")
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "invalid_json"
    assert client.post("/api/v1/automation/circuit/reset", headers=api_headers).status_code == 200
