"""Hostile values from outside, through the real app on a real Redis: URLs that are not
http(s), non-finite numbers, invisible characters, chunked bodies over the size limit
(through the Flask test client and a real gunicorn).
"""

import http.client
import io
import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from config.policy import Policy
from core.intake import flush_all
from core.models import Workload
from core.records import utcnow
from core.store.rollouts import rollout_for
from receiver.app import create_app
from tests import samples
from tests.secrets import WEBHOOK_TOKEN

pytestmark = pytest.mark.integration

LIMIT = 4096
WEBHOOK = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
BAD_URLS = [
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "//evil.example/x",
    "http:evil.example",
    "https://",
    " https://evil.example/",
    "java\tscript:alert(1)",
    "https://evil.example/\u202egpj.exe",
]


@pytest.fixture
def app(make_settings):
    """The app in local insecure mode (dashboard and API open), webhooks with their token,
    and a small body limit."""
    settings = make_settings(api_token=None, insecure=True, max_body_bytes=LIMIT)
    return create_app(settings, policy=Policy())


@pytest.fixture
def store(app):
    return app.extensions["backstop"].store


def deployment(**fields) -> dict:
    return {"namespace": "shop", "name": "checkout", **fields}


def kill_switch(**overrides) -> dict:
    alert = samples.am_alert(starts_at=utcnow().isoformat(), backstop_rollback="true")
    alert.update(overrides)
    return alert


# -- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_deployment_url_that_is_not_http_is_a_400_and_stores_nothing(client, store, url):
    answer = client.post("/webhooks/deployments", json=deployment(url=url), headers=WEBHOOK)
    assert answer.status_code == 400, answer.text
    error = answer.get_json()["error"]
    assert error["code"] == "invalid_payload" and error["message"].startswith("url: ")
    assert store.rollouts.recent(limit=10) == []


def test_the_dashboard_links_only_http_urls(client, store):
    """An http(s) URL from CI is linked; one stored before URLs were checked (or written by
    anything but the webhook) that is not http(s) is never an href."""
    url = "https://ci.example/shop/checkout/runs/42?attempt=1"
    answer = client.post(
        "/webhooks/deployments", json=deployment(url=url, version="v42"), headers=WEBHOOK
    )
    assert answer.status_code == 202, answer.text
    for index, bad in enumerate(BAD_URLS):
        workload = Workload("default", "shop", "Deployment", f"w{index}")
        rollout = rollout_for(workload, started_at=utcnow(), url=bad, version="v1", sources=["ci"])
        store.rollouts.record_ci(rollout, merge_window=timedelta(minutes=5))
    page = client.get("/deployments").text
    hrefs = [part.split('"', 1)[0] for part in page.split('href="')[1:]]
    assert url.replace("&", "&amp;") in hrefs
    assert all(href.startswith(("/", "http://", "https://")) for href in hrefs), hrefs


def test_vendor_urls_that_are_not_http_are_dropped_and_the_batch_is_kept(client, store):
    bad = {**samples.am_alert(fingerprint="bad"), "generatorURL": "javascript:alert(1)"}
    body = samples.alertmanager(bad, samples.am_alert(fingerprint="good"))
    body["externalURL"] = "data:text/html,x"
    answer = client.post("/webhooks/alertmanager", json=body, headers=WEBHOOK)
    assert answer.status_code == 202 and answer.get_json()["accepted"] == 2
    flush_all()
    events = {e.event["fingerprint"]: e.event for e in store.episodes.recent_episodes()}
    assert events["bad"]["generator_url"] == "" and events["bad"]["external_url"] == ""
    assert events["good"]["generator_url"].startswith("http://prometheus:9090/graph")

    alert = samples.grafana_alert(fingerprint="g1")
    alert.update(
        dashboardURL="javascript:alert(1)",
        silenceURL="file:///etc/passwd",
        panelURL="https://grafana.example/d/abc?viewPanel=4",
    )
    grafana = samples.grafana(alert)
    answer = client.post("/webhooks/grafana", json=grafana, headers=WEBHOOK)
    assert answer.status_code == 202, answer.text
    flush_all()
    [event] = [e.event for e in store.episodes.recent_episodes() if e.source == "grafana"]
    assert (event["dashboard_url"], event["silence_url"]) == ("", "")
    assert event["panel_url"] == "https://grafana.example/d/abc?viewPanel=4"


# -- non-finite numbers ----------------------------------------------------------------------


def grafana_with_values(values: str) -> bytes:
    body = json.dumps(samples.grafana(samples.grafana_alert(fingerprint="nan")))
    return body.replace('{"A": 1.73, "B": 1.0, "C": null}', values).encode()


@pytest.mark.parametrize(
    "values", ['{"A": NaN}', '{"A": 1, "B": Infinity}', '{"A": -Infinity}', '{"A": 1e999}']
)
def test_non_finite_numbers_are_a_400_naming_the_field(client, redis_client, values):
    body = grafana_with_values(values)
    assert values in body.decode()
    keys = redis_client.dbsize()
    answer = client.post(
        "/webhooks/grafana", data=body, headers={**WEBHOOK, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert "values." in answer.get_json()["error"]["message"]
    assert "finite" in answer.get_json()["error"]["message"]
    flush_all()
    assert redis_client.dbsize() == keys
    # The words in strings are text, not numbers.
    fine = samples.grafana(samples.grafana_alert(summary="NaN", other="-Infinity"))
    assert client.post("/webhooks/grafana", json=fine, headers=WEBHOOK).status_code == 202


@pytest.mark.parametrize("path", ["/webhooks/alertmanager", "/webhooks/deployments"])
def test_a_non_finite_number_anywhere_in_a_body_is_a_400(client, redis_client, path):
    document = samples.alertmanager() if path.endswith("manager") else deployment()
    body = json.dumps({**document, "vendorField": {"score": "x"}}).replace('"x"', "NaN")
    keys = redis_client.dbsize()
    answer = client.post(path, data=body, headers={**WEBHOOK, "Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.get_json()["error"]["message"].startswith("vendorField.score: ")
    flush_all()
    assert redis_client.dbsize() == keys


# -- invisible characters --------------------------------------------------------------------


def test_a_workload_name_with_an_invisible_character_names_no_workload(client, store):
    alert = kill_switch(fingerprint="zw")
    alert["labels"].update(deployment="check\u200bout", alertname="High\u202e5xx")
    body = samples.alertmanager(alert)
    answer = client.post("/webhooks/alertmanager", json=body, headers=WEBHOOK)
    assert answer.status_code == 202, answer.text
    [decision] = answer.get_json()["decisions"]
    assert (decision["outcome"], decision["reason"]) == ("skipped", "no_workload")
    flush_all()
    marked = '<span class="invisible" title="invisible character">&lt;U+202E&gt;</span>'
    for page in ("/alerts", f"/decisions/{decision['id']}"):
        text = client.get(page).text
        assert f"High{marked}5xx" in text and "\u202e" not in text
    assert "check\\u200bout" in client.get(f"/decisions/{decision['id']}").text  # labels JSON


def test_records_with_invisible_characters_are_shown_marked_on_the_dashboard(client, store):
    workload = Workload("default", "shop", "Deployment", "check\u200bout")
    rollout = rollout_for(workload, started_at=utcnow(), version="v2\ufeff", sources=["ci"])
    store.rollouts.record_ci(rollout, merge_window=timedelta(minutes=5))
    page = client.get("/deployments").text
    assert "check" + '<span class="invisible" title="invisible character">&lt;U+200B&gt;' in page
    assert "&lt;U+FEFF&gt;" in page and "\u200b" not in page and "\ufeff" not in page


@pytest.mark.parametrize("field", ["namespace", "name", "cluster"])
def test_ci_and_api_refuse_workload_names_with_invisible_characters(client, store, field):
    answer = client.post(
        "/webhooks/deployments", json=deployment(**{field: "shop\u200b"}), headers=WEBHOOK
    )
    assert answer.status_code == 400 and answer.get_json()["error"]["message"].startswith(field)
    pause = {"reason": "x", "workload": deployment(**{field: "shop\u2066"})}
    answer = client.post("/api/v1/automation/pause", json=pause)
    assert answer.status_code == 400, answer.text
    assert answer.get_json()["error"]["message"].startswith(f"workload.{field}")
    assert store.rollouts.recent(limit=10) == [] and not store.automation.paused_workloads()


# -- chunked bodies over the limit -----------------------------------------------------------


def padded(document: dict, size: int) -> bytes:
    """`document` as JSON, padded with spaces to exactly `size` bytes."""
    body = json.dumps(document).encode()
    return body + b" " * (size - len(body))


def chunked(client, path: str, body: bytes, content_type="application/json", **headers):
    """POST `body` with no Content-Length, as a server hands a chunked body to the app."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", "Content-Type": content_type, **headers},
        environ_overrides={"wsgi.input_terminated": True},
    )


BODIES = {
    "/webhooks/alertmanager": lambda: samples.alertmanager(kill_switch()),
    "/webhooks/grafana": lambda: samples.grafana(samples.grafana_alert()),
    "/webhooks/deployments": lambda: deployment(url="https://ci.example/1"),
    "/api/v1/automation/pause": lambda: {"reason": "chunked"},
}


@pytest.mark.parametrize("path", BODIES)
def test_a_chunked_body_over_the_limit_is_a_413_and_stores_nothing(client, redis_client, path):
    keys = redis_client.dbsize()
    answer = chunked(client, path, padded(BODIES[path](), LIMIT + 1), **WEBHOOK)
    assert answer.status_code == 413, answer.text
    assert answer.get_json()["error"]["code"] == "payload_too_large"
    flush_all()
    assert redis_client.dbsize() == keys
    # At the limit exactly, the same request is accepted.
    answer = chunked(client, path, padded(BODIES[path](), LIMIT), **WEBHOOK)
    assert answer.status_code in (200, 202), answer.text


def test_a_chunked_login_form_over_the_limit_is_a_413(client):
    form = b"username=alice&password=secret&nonce=n&next=/"
    answer = chunked(
        client,
        "/login",
        form + b"&pad=" + b"x" * (LIMIT - len(form) - 4),
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 413
    at_limit = form + b"&pad=" + b"x" * (LIMIT - len(form) - 5)
    answer = chunked(client, "/login", at_limit, content_type="application/x-www-form-urlencoded")
    assert answer.status_code != 413


@pytest.fixture
def receiver_env(receiver_env):
    """The gunicorn receiver with the same small body limit."""
    return {**receiver_env, "BACKSTOP_MAX_BODY_BYTES": str(LIMIT)}


def post_chunked(server, path: str, body: bytes) -> tuple[int, dict]:
    """POST `body` to the real server with Transfer-Encoding: chunked (no Content-Length)."""
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        pieces = (body[start : start + 1000] for start in range(0, len(body), 1000))
        headers = {**WEBHOOK, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        connection.request("POST", path, body=pieces, headers=headers, encode_chunked=True)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def test_chunked_bodies_over_gunicorn_get_413_over_the_limit_202_at_it(
    receiver_server, redis_client
):
    keys = redis_client.dbsize()
    for path, document in (
        ("/webhooks/alertmanager", samples.alertmanager(kill_switch())),
        ("/webhooks/deployments", deployment(url="https://ci.example/1")),
    ):
        status, answer = post_chunked(receiver_server, path, padded(document, LIMIT + 1))
        assert status == 413 and answer["error"]["code"] == "payload_too_large", answer
        status, answer = post_chunked(receiver_server, path, padded(document, LIMIT + 3000))
        assert status == 413, answer
    assert redis_client.dbsize() == keys
    status, answer = post_chunked(
        receiver_server, "/webhooks/deployments", padded(deployment(), LIMIT)
    )
    assert status == 202, answer
