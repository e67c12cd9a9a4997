"""The real `jira` and `pagerduty` clients against the Jira and PagerDuty test doubles."""

import io
import ssl

import pagerduty
import pytest
import requests
from jira import JIRA, JIRAError
from pagerduty import EventsApiV2Client

from testbed.doubles.jira import CLOUD_API_TOKEN, CLOUD_EMAIL, JiraDouble
from testbed.doubles.pagerduty import PagerDutyDouble

pytestmark = pytest.mark.integration

ISSUE = {
    "project": {"key": "OPS"},
    "issuetype": {"name": "Bug"},
    "summary": "Rollback of checkout to revision 41",
    "labels": ["backstop", "backstop-key-x"],
}
# Every byte value, and line endings that a careless multipart parser would mangle.
REPORT = bytes(range(256)) + b"\r\n--boundary\r\n\r\n\n\r"
TIMESTAMP = "2025-06-01T12:00:00.000+00:00"


def jira_client(double: JiraDouble, **options) -> JIRA:
    """The real client with the credentials the double's mode accepts."""
    if double.mode == "cloud":
        return JIRA(server=double.url, basic_auth=(double.email, double.api_token), **options)
    return JIRA(server=double.url, token_auth=double.pat, **options)


def pagerduty_client(double: PagerDutyDouble, routing_key: str | None = None):
    """The real Events API client, trusting the double's CA, with millisecond backoff."""
    client = EventsApiV2Client(
        routing_key or double.routing_key,
        base_url=double.url,
        verify=ssl.create_default_context(cafile=double.ca_path),
    )
    client.sleep_timer = 0.001
    return client


@pytest.fixture(params=["cloud", "server"])
def jira_double(request):
    """Each Jira double in turn."""
    return request.getfixturevalue("jira_server" if request.param == "cloud" else "jira_dc")


def test_cloud_client_uses_basic_auth_and_sees_cloud(jira_server):
    client = jira_client(jira_server)
    assert client.deploymentType == "Cloud"
    [info] = jira_server.requests
    assert (info.path, info.auth_scheme, info.status) == ("/rest/api/2/serverInfo", "Basic", 200)
    assert "authorization" not in info.headers


def test_server_client_uses_a_bearer_pat_and_sees_server(jira_dc):
    client = jira_client(jira_dc)
    assert client.deploymentType == "Server"
    assert [r.auth_scheme for r in jira_dc.requests] == ["Bearer"]


def test_issue_with_attachment_comment_and_transition_is_found_by_label(jira_double):
    client = jira_client(jira_double)
    issue = client.create_issue(fields=ISSUE)
    attachment = client.add_attachment(issue.key, io.BytesIO(REPORT), filename="report.md")
    client.add_comment(issue.key, "Rolled back; error rate recovered.")
    client.transition_issue(issue.key, "Done")

    [stored] = jira_double.attachments
    assert (stored.issue_key, stored.filename, stored.content) == (issue.key, "report.md", REPORT)
    assert stored.content_type == "application/octet-stream"
    assert attachment.size == len(REPORT)
    assert attachment.get() == REPORT
    assert [c.body for c in jira_double.comments] == ["Rolled back; error rate recovered."]
    assert jira_double.issues[issue.key].status == "Done"

    [found] = client.search_issues('labels = "backstop-key-x"')
    assert found.key == issue.key
    assert found.fields.status.name == "Done"
    assert found.fields.labels == ISSUE["labels"]
    assert [a.filename for a in found.fields.attachment] == ["report.md"]
    assert [c.body for c in found.fields.comment.comments] == ["Rolled back; error rate recovered."]


def test_search_uses_the_path_of_the_deployment_type(jira_double):
    client = jira_client(jira_double)
    client.search_issues('labels = "backstop-key-x"')
    cloud = jira_double.mode == "cloud"
    used, other = ("search/jql", "search") if cloud else ("search", "search/jql")
    searches = [r for r in jira_double.requests if r.path.startswith("/rest/api/2/search")]
    assert [r.path for r in searches] == [f"/rest/api/2/{used}"]
    assert searches[0].param("jql") == 'labels = "backstop-key-x"'
    with pytest.raises(JIRAError) as error:
        client._session.get(f"{jira_double.url}/rest/api/2/{other}", params={"jql": "x"})
    assert error.value.status_code == (410 if cloud else 404)


def test_search_ands_labels_in_and_project(jira_double):
    client = jira_client(jira_double)
    wanted = client.create_issue(fields=ISSUE)
    client.create_issue(fields={**ISSUE, "project": {"key": "WEB"}})
    client.create_issue(fields={**ISSUE, "labels": ["other"]})
    found = client.search_issues('labels in ("backstop-key-x", nothing) AND project = ops')
    assert [issue.key for issue in found] == [wanted.key]


def test_search_pages_as_each_deployment_type_does(jira_double):
    client = jira_client(jira_double)
    keys = [client.create_issue(fields=ISSUE).key for _ in range(3)]
    first = client.search_issues("project = OPS", maxResults=2)
    assert [issue.key for issue in first] == keys[:2]
    if jira_double.mode == "server":
        assert first.total == 3
        rest = client.search_issues("project = OPS", startAt=2, maxResults=2)
    else:
        rest = client.enhanced_search_issues(
            "project = OPS", nextPageToken=first.nextPageToken, maxResults=2
        )
    assert [issue.key for issue in rest] == keys[2:]


def test_search_lag_hides_new_issues_from_search_only(jira_server):
    jira_server.search_lag = 60
    client = jira_client(jira_server)
    issue = client.create_issue(fields=ISSUE)
    assert client.search_issues('labels = "backstop-key-x"') == []
    assert client.issue(issue.key).key == issue.key


def test_unsupported_jql_is_a_400(jira_dc):
    client = jira_client(jira_dc)
    with pytest.raises(JIRAError) as error:
        client.search_issues("labels = x OR labels = y")
    assert error.value.status_code == 400


def test_create_without_required_fields_is_a_400_with_jira_errors(jira_server):
    client = jira_client(jira_server)
    # The client itself insists on project and issuetype keys; their contents reach the double.
    fields = {"project": {"key": "OPS"}, "issuetype": {}, "labels": ["has space"]}
    with pytest.raises(JIRAError) as error:
        client.create_issue(fields=fields)
    assert error.value.status_code == 400
    assert set(error.value.response.json()["errors"]) == {"issuetype", "summary", "labels"}
    assert jira_server.issues == {}


def test_attachment_without_xsrf_opt_out_is_refused(jira_dc):
    key = jira_client(jira_dc).create_issue(fields=ISSUE).key
    answer = requests.post(
        f"{jira_dc.url}/rest/api/2/issue/{key}/attachments",
        headers={"Authorization": f"Bearer {jira_dc.pat}"},
        files={"file": ("a.txt", b"a")},
        timeout=5,
    )
    assert (answer.status_code, answer.text) == (403, "XSRF check failed")
    assert jira_dc.attachments == []


@pytest.mark.parametrize(
    ("mode", "credentials"),
    [
        ("cloud", {"basic_auth": (CLOUD_EMAIL, "wrong-token")}),
        ("cloud", {"token_auth": CLOUD_API_TOKEN}),
        ("server", {"token_auth": "wrong-pat"}),
        ("server", {}),
    ],
)
def test_bad_credentials_are_a_401(mode, credentials):
    with JiraDouble(mode=mode) as double, pytest.raises(JIRAError) as error:
        JIRA(server=double.url, **credentials)
    assert error.value.status_code == 401
    assert [r.status for r in double.requests] == [401]


def test_503_surfaces_as_a_jira_error_until_it_clears(jira_server):
    client = jira_client(jira_server)
    key = client.create_issue(fields=ISSUE).key
    jira_server.fail_with(503, count=1)
    with pytest.raises(JIRAError) as error:
        client.issue(key)
    assert error.value.status_code == 503
    assert client.issue(key).key == key


def test_429_with_retry_after_is_retried_by_the_client(jira_dc):
    client = jira_client(jira_dc)
    jira_dc.fail_with(429, count=1, retry_after=0)
    assert client.server_info()["deploymentType"] == "Server"
    assert [r.status for r in jira_dc.requests] == [200, 429, 200]


def test_down_refuses_connections_and_up_serves_again(jira_server):
    client = jira_client(jira_server, max_retries=0)
    key = client.create_issue(fields=ISSUE).key
    jira_server.down()
    with pytest.raises(requests.ConnectionError):
        client.issue(key)
    jira_server.up()
    assert client.issue(key).key == key


def test_slow_server_meets_the_client_timeout(jira_dc):
    client = jira_client(jira_dc, timeout=0.3)
    jira_dc.slow(30)
    with pytest.raises(requests.Timeout):
        client.server_info()


def test_trigger_then_resolve_over_tls(pagerduty_server):
    client = pagerduty_client(pagerduty_server)
    assert pagerduty_server.url.startswith("https://")
    dedup_key = client.trigger(
        "checkout error rate 12% after deploy",
        "backstop",
        dedup_key="backstop-key-x",
        severity="error",
        payload={"timestamp": TIMESTAMP},
        custom_details={"revision": 41, "decision": "rollback"},
        links=[{"href": "https://jira.example.com/browse/OPS-1", "text": "OPS-1"}],
        images=[{"src": "https://grafana.example.com/render/1.png", "alt": "error rate"}],
    )
    assert dedup_key == "backstop-key-x"
    assert pagerduty_server.incidents[dedup_key].state == "triggered"
    assert client.resolve(dedup_key) == dedup_key

    incident = pagerduty_server.incidents[dedup_key]
    assert incident.state == "resolved"
    trigger, resolve = incident.events
    assert trigger["payload"] == {
        "summary": "checkout error rate 12% after deploy",
        "source": "backstop",
        "severity": "error",
        "timestamp": TIMESTAMP,
        "custom_details": {"revision": 41, "decision": "rollback"},
    }
    assert trigger["links"][0]["href"] == "https://jira.example.com/browse/OPS-1"
    assert trigger["images"][0]["src"] == "https://grafana.example.com/render/1.png"
    assert trigger["routing_key"] == pagerduty_server.routing_key
    assert resolve["event_action"] == "resolve"


def test_acknowledge_and_a_trigger_without_dedup_key(pagerduty_server):
    client = pagerduty_client(pagerduty_server)
    dedup_key = client.trigger("s", "backstop", payload={"timestamp": TIMESTAMP})
    assert len(dedup_key) == 32
    client.acknowledge(dedup_key)
    assert pagerduty_server.incidents[dedup_key].state == "acknowledged"


def test_a_client_that_does_not_trust_the_ca_cannot_connect(pagerduty_server):
    client = EventsApiV2Client(pagerduty_server.routing_key, base_url=pagerduty_server.url)
    client.max_network_attempts = 0
    with pytest.raises(pagerduty.Error) as error:
        client.trigger("s", "backstop", payload={"timestamp": TIMESTAMP})
    assert "CERTIFICATE_VERIFY_FAILED" in repr(error.value.__cause__)
    assert pagerduty_server.events == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"severity": "page"}, "'payload.severity' is invalid"),
        ({"summary": "x" * 1025}, "'summary' is too long"),
        ({"images": [{"src": "http://grafana.example.com/1.png"}]}, "'images[0].src'"),
        ({"dedup_key": "k" * 256}, "'dedup_key' is too long"),
        ({"custom_details": {"log": "x" * 600_000}}, "larger than the 524288 bytes allowed"),
    ],
)
def test_invalid_events_get_a_400(pagerduty_server, change, message):
    client = pagerduty_client(pagerduty_server)
    event = {"summary": "s", "source": "backstop", "payload": {"timestamp": TIMESTAMP}}
    with pytest.raises(pagerduty.HttpError) as error:
        client.trigger(**(event | change))
    body = error.value.response.json()
    assert error.value.response.status_code == 400
    assert (body["status"], body["message"]) == ("invalid event", "Event object is invalid")
    assert any(message in text for text in body["errors"])
    assert pagerduty_server.events == []
    assert [r.status for r in pagerduty_server.requests] == [400]


def test_a_routing_key_of_the_wrong_length_gets_a_400(pagerduty_server):
    client = pagerduty_client(pagerduty_server, routing_key="too-short")
    with pytest.raises(pagerduty.HttpError) as error:
        client.resolve("backstop-key-x")
    assert error.value.response.json()["errors"] == [
        "Length of 'routing_key' is incorrect (should be 32 characters)"
    ]


def test_429_is_retried_by_the_client_until_accepted(pagerduty_server):
    client = pagerduty_client(pagerduty_server)
    pagerduty_server.fail_with(429, count=2)
    client.trigger("s", "backstop", dedup_key="k", payload={"timestamp": TIMESTAMP})
    assert [r.status for r in pagerduty_server.requests] == [429, 429, 202]
    assert pagerduty_server.incidents["k"].state == "triggered"


def test_429_surfaces_once_the_client_stops_retrying(pagerduty_server):
    client = pagerduty_client(pagerduty_server)
    client.retry[429] = 1
    pagerduty_server.fail_with(429)
    with pytest.raises(pagerduty.HttpError) as error:
        client.trigger("s", "backstop", payload={"timestamp": TIMESTAMP})
    assert error.value.response.status_code == 429
    assert [r.status for r in pagerduty_server.requests] == [429, 429]


def test_500_is_retried_twice_then_raised(pagerduty_server):
    client = pagerduty_client(pagerduty_server)
    pagerduty_server.fail_with(500)
    with pytest.raises(pagerduty.ServerHttpError):
        client.trigger("s", "backstop", payload={"timestamp": TIMESTAMP})
    assert [r.status for r in pagerduty_server.requests] == [500, 500, 500]


def test_pagerduty_down_is_a_network_error_and_up_keeps_the_ca(pagerduty_server):
    client = pagerduty_client(pagerduty_server)
    pagerduty_server.down()
    with pytest.raises(pagerduty.Error) as error:
        client.trigger("s", "backstop", payload={"timestamp": TIMESTAMP})
    assert error.value.response is None
    pagerduty_server.up()
    client.trigger("s", "backstop", dedup_key="k", payload={"timestamp": TIMESTAMP})
    assert list(pagerduty_server.incidents) == ["k"]


def test_pagerduty_slow_beyond_the_client_timeout_is_a_network_error(pagerduty_server):
    client = pagerduty_client(pagerduty_server)
    client.timeout = 0.2
    client.max_network_attempts = 1
    pagerduty_server.slow(30)
    with pytest.raises(pagerduty.Error):
        client.trigger("s", "backstop", payload={"timestamp": TIMESTAMP})
    assert len(pagerduty_server.requests) == 2
