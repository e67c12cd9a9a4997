"""The login form on real Redis: where it redirects afterwards (never off-site, never a
500), and how failed logins are throttled (per client address and per name, each with its
own limit, for a bounded window)."""

import re

import pytest

from config.policy import Policy
from core.store import keys
from receiver.app import create_app
from tests.conftest import wait_for
from tests.secrets import API_TOKEN, DASHBOARD_PASSWORDS

PASSWORDS = DASHBOARD_PASSWORDS
PER_NAME, PER_ADDRESS = 4, 7  # small limits, so that each test needs few attempts


@pytest.fixture
def app(make_settings, users_file):
    settings = make_settings(
        users_file=users_file,
        login_max_failures_per_name=PER_NAME,
        login_max_failures_per_address=PER_ADDRESS,
    )
    return create_app(settings, policy=Policy())


def log_in(app, address: str = "127.0.0.1", **fields):
    """POST the login form from `address` with a fresh nonce; the answer."""
    client = app.test_client()
    environ = {"REMOTE_ADDR": address}
    page = client.get("/login", environ_base=environ).text
    nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"nonce": nonce, **fields}, environ_base=environ)


def with_password(app, name: str, password: str | None = None, address: str = "127.0.0.1"):
    return log_in(app, address, username=name, password=password or PASSWORDS[name]).status_code


# -- where to go after logging in (4) --------------------------------------------------------

HOSTILE_TARGETS = [
    "//evil.example/x",
    "https://evil.example/",
    "https:evil.example",
    "http:/evil.example",
    "javascript:alert(1)",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/\x00/evil.example",
    "/\x0b/evil.example",
    "/\x7f/evil.example",
    "\r\nSet-Cookie: x=1",
    "/x\r\nSet-Cookie: backstop_session=forged",
    "/\u3000/evil.example",
    "/\ufeff/evil.example",
    "\u2028//evil.example",
    "//\u0435vil.example",
    "\uff0f\uff0fevil.example",
    "evil.example",
    "",
    "/" * 5000,
]


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_login_never_redirects_off_site_and_never_fails(app, target):
    answer = log_in(app, token=API_TOKEN, next=target)
    assert answer.status_code == 303
    location = answer.headers["Location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\"))
    assert not re.search(r"[\x00-\x20\x7f-\uffff\\]", location), location
    # The form's hidden field says the same.
    page = app.test_client().get("/login", query_string={"next": target})
    assert page.status_code == 200
    field = re.search(r'name="next" value="([^"]*)"', page.text).group(1)
    assert field.startswith("/") and not field.startswith(("//", "/\\"))


@pytest.mark.parametrize(
    "target, location",
    [
        ("/jobs", "/jobs"),
        ("/alerts?workload=shop%2Fcheckout&outcome=skipped", None),
        ("/%2F%2Fevil.example", None),  # a path on this site: browsers do not decode it
        ("/rollbacks/caf\u00e9", "/rollbacks/caf%C3%A9"),
        ("/.//evil.example", None),
    ],
)
def test_login_keeps_a_target_on_this_site(app, target, location):
    answer = log_in(app, token=API_TOKEN, next=target)
    assert answer.status_code == 303 and answer.headers["Location"] == (location or target)


@pytest.mark.parametrize("query", ["/%09/evil.example", "/%0D%0A/evil.example", "%09//evil"])
def test_hostile_targets_from_the_query_string_are_refused(app, query):
    """`?next=/%09/evil.example` is `/<tab>/evil.example` once decoded: `//evil.example`."""
    page = app.test_client().get("/login?next=" + query)
    assert page.status_code == 200
    assert re.search(r'name="next" value="([^"]*)"', page.text).group(1) == "/"


# -- throttling (6) ----------------------------------------------------------------------------


def test_spraying_names_from_one_address_is_stopped_by_the_address_limit(app):
    for i in range(PER_ADDRESS):
        assert with_password(app, f"name-{i}", "guess", address="10.0.0.1") == 401
    # Even the right password from that address waits; another address does not.
    assert with_password(app, "alice", address="10.0.0.1") == 429
    assert with_password(app, "alice", address="10.0.0.2") == 303


def test_guessing_one_name_from_many_addresses_is_stopped_by_the_name_limit(app):
    for i in range(PER_NAME):
        assert with_password(app, "alice", "guess", address=f"10.0.1.{i}") == 401
    assert with_password(app, "alice", address="10.0.1.200") == 429
    # The lock is the name's: another name from the same addresses still logs in.
    assert with_password(app, "victor", address="10.0.1.0") == 303


def test_a_locked_address_or_name_never_stops_the_token_elsewhere(app):
    for _ in range(PER_ADDRESS):
        assert log_in(app, "10.0.2.1", token="wrong-token").status_code == 401
    assert log_in(app, "10.0.2.1", token=API_TOKEN).status_code == 429
    for i in range(PER_NAME):
        with_password(app, "alice", "guess", address=f"10.0.3.{i}")
    assert with_password(app, "alice", address="10.0.2.2") == 429
    # Token logins have no name: a locked name does not stop them, on any address.
    assert log_in(app, "10.0.2.2", token=API_TOKEN).status_code == 303
    assert log_in(app, "10.0.3.0", token=API_TOKEN).status_code == 303


def test_an_unknown_name_is_counted_and_locked_like_a_known_one(app, redis_client):
    for i in range(PER_NAME):
        assert with_password(app, "nobody", "guess", address=f"10.0.4.{i}") == 401
    assert with_password(app, "nobody", "guess", address="10.0.4.200") == 429
    assert with_password(app, "alice", "guess", address="10.0.4.201") == 401


def test_a_lockout_lasts_at_most_the_window(make_settings, users_file, redis_client):
    app = create_app(
        make_settings(users_file=users_file, login_max_failures_per_name=2, login_window_seconds=1),
        policy=Policy(),
    )
    for _ in range(2):
        assert with_password(app, "alice", "guess") == 401
    assert with_password(app, "alice") == 429
    counts = list(redis_client.scan_iter(keys.LOGIN_FAILURES + "*"))
    assert counts and all(0 < redis_client.pttl(key) <= 1000 for key in counts)
    # Failing again while locked does not push the end of the window back.
    assert with_password(app, "alice", "guess") == 429
    assert all(redis_client.pttl(key) <= 1000 for key in counts)
    wait_for(lambda: not redis_client.exists(*counts), timeout=5, message="the window's end")
    assert with_password(app, "alice") == 303


def test_a_failure_counts_against_its_name_and_its_address_and_both_expire(app, redis_client):
    for i in range(3):
        with_password(app, f"n{i}", "guess", address="10.0.5.1")
    counts = list(redis_client.scan_iter(keys.LOGIN_FAILURES + "*"))
    assert len(counts) == 4  # three names, one address
    assert all(redis_client.ttl(key) > 0 for key in counts)
