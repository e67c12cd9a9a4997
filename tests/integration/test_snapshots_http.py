"""Snapshots over HTTP: the API token or a signed, expiring link; and the incidents list."""

import time

import pytest

from config.policy import Policy
from core.records import Incident
from core.snapshots import Snapshot, sign
from receiver.app import create_app

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest.fixture
def app_and_snapshot(make_settings):
    settings = make_settings(snapshot_secret="s3cret")
    app = create_app(settings, policy=Policy())
    store = app.extensions["backstop"].store
    snapshot = Snapshot(
        id="abcDEF123_-xyz",
        name="5xx",
        expr="up",
        png=PNG,
        csv=b"timestamp,series,value\n",
        points=1,
    )
    store.snapshots.save(snapshot)
    return app, settings, snapshot


def test_snapshots_need_the_api_token_or_a_signed_link(app_and_snapshot, api_headers):
    app, settings, snapshot = app_and_snapshot
    web = app.test_client()
    assert web.get(f"/snapshots/{snapshot.id}.png").status_code == 401
    with_token = web.get(f"/snapshots/{snapshot.id}.png", headers=api_headers)
    assert with_token.status_code == 200 and with_token.mimetype == "image/png"
    assert with_token.data == PNG
    csv = web.get(f"/snapshots/{snapshot.id}.csv", headers=api_headers)
    assert csv.data.startswith(b"timestamp,series,value")
    link = sign(snapshot.id, secret=settings.snapshot_key(), expires=int(time.time()) + 60)
    assert web.get(f"/snapshots/{snapshot.id}.png?{link}").data == PNG


@pytest.mark.parametrize("tamper", ["expired", "other-id", "bad-sig"])
def test_bad_links_are_refused(app_and_snapshot, tamper):
    app, settings, snapshot = app_and_snapshot
    key = settings.snapshot_key()
    expires = int(time.time()) + (-5 if tamper == "expired" else 60)
    link = sign(
        "someone-else" if tamper == "other-id" else snapshot.id, secret=key, expires=expires
    )
    if tamper == "bad-sig":
        link = link[:-4] + "0000"
    answer = app.test_client().get(f"/snapshots/{snapshot.id}.png?{link}")
    assert answer.status_code == 403
    assert answer.get_json()["error"]["code"] == "forbidden"


def test_unknown_snapshots_and_types(app_and_snapshot, api_headers):
    app, _, snapshot = app_and_snapshot
    web = app.test_client()
    assert web.get("/snapshots/nope.png", headers=api_headers).status_code == 404
    assert web.get(f"/snapshots/{snapshot.id}.svg", headers=api_headers).status_code == 404


def test_incidents_are_listed_with_their_delivery(app_and_snapshot, api_headers):
    app, _, _ = app_and_snapshot
    store = app.extensions["backstop"].store
    incident = Incident(id="rollback-x-3", key="backstop-1", summary="s", status="verified")
    incident.jira.state, incident.pagerduty.state = "delivered", "not_configured"
    store.incidents.save(incident)
    [listed] = (
        app.test_client().get("/api/v1/incidents", headers=api_headers).get_json()["incidents"]
    )
    assert (listed["id"], listed["jira"]["state"], listed["pagerduty"]["state"]) == (
        "rollback-x-3",
        "delivered",
        "not_configured",
    )
