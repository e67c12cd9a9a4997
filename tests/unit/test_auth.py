"""Webhook and API credentials, and Grafana's HMAC signatures."""

import base64
import time

import pytest
from flask import Flask

from config.settings import Settings
from receiver import auth
from receiver.errors import ApiError

BODY = b'{"alerts": []}'
SECRET = "hmac-secret"


def settings(**overrides) -> Settings:
    return Settings(**{"webhook_token": "tok", "api_token": "api", **overrides})


@pytest.fixture
def request_with():
    """Build a request with the given headers, without pushing a context."""
    app = Flask(__name__)

    def build(headers: dict):
        ctx = app.test_request_context("/", method="POST", headers=headers, data=BODY)
        return ctx.request

    return build


def basic(user: str, password: str) -> dict:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def rejected(call) -> str:
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.status == 401
    assert "WWW-Authenticate" in caught.value.headers
    return caught.value.message


def test_bearer_token_is_accepted(request_with):
    auth.require_webhook_auth(request_with({"Authorization": "Bearer tok"}), settings())


def test_basic_auth_with_the_token_as_password(request_with):
    auth.require_webhook_auth(request_with(basic("backstop", "tok")), settings())


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer tok2"},
        {"Authorization": "Token tok"},
        basic("someone", "tok"),
        basic("backstop", "nope"),
    ],
)
def test_wrong_credentials_are_refused(request_with, headers):
    assert rejected(lambda: auth.require_webhook_auth(request_with(headers), settings())) == (
        "invalid credentials"
    )


def test_missing_credentials_are_refused(request_with):
    assert rejected(lambda: auth.require_webhook_auth(request_with({}), settings())) == (
        "missing credentials"
    )


def test_api_token_is_separate_from_the_webhook_token(request_with):
    auth.require_api_auth(request_with({"Authorization": "Bearer api"}), settings())
    rejected(
        lambda: auth.require_api_auth(request_with({"Authorization": "Bearer tok"}), settings())
    )
    # Basic auth is for webhook senders only.
    rejected(lambda: auth.require_api_auth(request_with(basic("backstop", "api")), settings()))


def test_no_token_configured_means_open(request_with):
    auth.require_token(request_with({}), None)


def signed(timestamp: str | None = None, secret: str = SECRET, body: bytes = BODY) -> dict:
    headers = {"X-Grafana-Alerting-Signature": auth.grafana_signature(secret, body, timestamp)}
    if timestamp is not None:
        headers["X-Grafana-Alerting-Signature-Timestamp"] = timestamp
    return headers


def verify(request, now=None, **overrides):
    config = settings(grafana_hmac_secret=SECRET, **overrides)
    auth.verify_grafana_signature(request, config, BODY, now=now)


def test_signature_over_the_body(request_with):
    verify(request_with(signed()))


def test_signature_over_timestamp_and_body(request_with):
    now = time.time()
    verify(request_with(signed(str(int(now)))), now=now)


def test_millisecond_timestamps_are_understood(request_with):
    now = time.time()
    verify(request_with(signed(str(int(now * 1000)))), now=now)


def test_signature_is_case_insensitive_hex(request_with):
    headers = signed()
    headers["X-Grafana-Alerting-Signature"] = headers["X-Grafana-Alerting-Signature"].upper()
    verify(request_with(headers))


@pytest.mark.parametrize("age", [301, -301, 3600])
def test_stale_or_future_timestamps_are_refused(request_with, age):
    now = time.time()
    request = request_with(signed(str(int(now - age))))
    assert rejected(lambda: verify(request, now=now)) == "stale signature timestamp"


def test_wrong_secret_is_refused(request_with):
    assert rejected(lambda: verify(request_with(signed(secret="other")))) == "invalid signature"


def test_signature_of_another_body_is_refused(request_with):
    request = request_with(signed(body=b'{"alerts": [1]}'))
    assert rejected(lambda: verify(request)) == "invalid signature"


def test_signature_without_its_timestamp_is_refused(request_with):
    now = time.time()
    headers = signed(str(int(now)))
    del headers["X-Grafana-Alerting-Signature-Timestamp"]
    assert rejected(lambda: verify(request_with(headers), now=now)) == "invalid signature"


def test_missing_or_garbled_signature_headers(request_with):
    rejected(lambda: verify(request_with({})))
    headers = signed("yesterday")
    assert rejected(lambda: verify(request_with(headers))) == "invalid signature timestamp"


def test_custom_header_names(request_with):
    now = time.time()
    ts = str(int(now))
    headers = {"X-Sig": auth.grafana_signature(SECRET, BODY, ts), "X-Ts": ts}
    verify(
        request_with(headers),
        now=now,
        grafana_signature_header="X-Sig",
        grafana_timestamp_header="X-Ts",
    )


def test_no_secret_configured_skips_the_check(request_with):
    auth.verify_grafana_signature(request_with({}), settings(), BODY)


# -- the key that signs dashboard sessions -----------------------------------------------------


def test_the_session_key_is_derived_from_the_api_token_apart_from_other_keys():
    derived = settings().session_key
    assert len(derived) == 32 and derived == settings().session_key  # every replica agrees
    assert derived != settings(api_token="rotated").session_key  # rotating it ends sessions
    assert derived not in (b"api", settings().snapshot_key())  # domain-separated


def test_a_session_secret_replaces_the_derivation_and_stays_secret():
    chosen = settings(session_secret="s" * 43)
    assert chosen.session_key == settings(session_secret="s" * 43, api_token="other").session_key
    assert chosen.session_key != settings().session_key
    assert "s" * 43 not in repr(chosen) and "s" * 43 not in str(chosen.model_dump())
    assert settings(session_secret="").session_secret is None  # empty is unset


def test_the_token_stamp_changes_with_the_token_and_reveals_nothing():
    stamp = settings(session_secret="s" * 43).token_stamp
    assert stamp == settings(session_secret="s" * 43).token_stamp
    assert stamp != settings(session_secret="s" * 43, api_token="rotated").token_stamp
    assert "api" not in stamp and Settings(webhook_token="tok").token_stamp is None


def test_backstop_run_generates_the_session_secret_under_var(tmp_path, capsys):
    import os
    import stat

    from cli.main import local_environment

    env = local_environment(tmp_path, insecure=False)
    path = tmp_path / "session-secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert env["BACKSTOP_SESSION_SECRET"] == path.read_text().strip()
    assert len(env["BACKSTOP_SESSION_SECRET"]) >= 43
    assert (
        local_environment(tmp_path, insecure=False)["BACKSTOP_SESSION_SECRET"]
        == (env["BACKSTOP_SESSION_SECRET"])
    )
    assert env["BACKSTOP_SESSION_SECRET"] not in capsys.readouterr().out  # never printed
