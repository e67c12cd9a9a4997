"""Dashboard sessions on real Redis: bound to a server-side secret, and ended when the
credentials they were made with change (a rotated API token, a user removed from the users
file or given another password or role), checked with two app instances on one Redis and
with the real gunicorn server."""

import hashlib
import json
import re

import pytest
import requests
from werkzeug.security import generate_password_hash

from config.policy import Policy
from core.store import keys
from receiver.app import create_app
from tests.secrets import API_TOKEN, DASHBOARD_PASSWORDS

PASSWORDS = DASHBOARD_PASSWORDS
SECRET = "a-session-secret-shared-by-every-replica"
HASHES = {name: generate_password_hash(password) for name, password in PASSWORDS.items()}
ROLES = {"alice": "operator", "victor": "viewer"}


def users_yaml(path, entries: dict[str, tuple[str, str]]):
    """Write a users file: name -> (role, password hash)."""
    lines = ["users:"]
    for name, (role, password_hash) in entries.items():
        lines += [f"  - name: {name}", f"    role: {role}", f"    password_hash: '{password_hash}'"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def users_file(tmp_path):
    return users_yaml(
        tmp_path / "users.yaml", {name: (ROLES[name], HASHES[name]) for name in PASSWORDS}
    )


@pytest.fixture
def app(make_settings, users_file):
    return create_app(make_settings(users_file=users_file), policy=Policy())


def nonce_of(client) -> str:
    return re.search(r'name="nonce" value="([^"]+)"', client.get("/login").text).group(1)


def log_in(app, **fields) -> str:
    """Log in through the form; the session cookie's value."""
    client = app.test_client()
    answer = client.post("/login", data={"nonce": nonce_of(client), **fields})
    assert answer.status_code == 303, answer.text
    return client.get_cookie("backstop_session").value


def as_user(app, name: str) -> str:
    return log_in(app, username=name, password=PASSWORDS[name])


def session_key(session_id: str) -> str:
    return keys.SESSION + hashlib.sha256(session_id.encode()).hexdigest()


def refused(app, session_id: str) -> bool:
    """The cookie opens neither a page (redirect to the login) nor the API (401)."""
    client = app.test_client(use_cookies=False)
    headers = {"Cookie": f"backstop_session={session_id}"}
    page = client.get("/", headers=headers)
    api = client.get("/api/v1/automation", headers=headers)
    page_refused = page.status_code == 303 and page.headers["Location"].startswith("/login")
    return page_refused and api.status_code == 401


def accepted(app, session_id: str) -> bool:
    client = app.test_client(use_cookies=False)
    headers = {"Cookie": f"backstop_session={session_id}"}
    return client.get("/api/v1/automation", headers=headers).status_code == 200


# -- bound to a server-side secret (1d) ------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        {"user": "token", "role": "operator", "csrf": "c" * 43, "via": "token"},
        {"user": "alice", "role": "operator", "csrf": "c" * 43, "via": "password"},
        {"user": "token", "role": "operator", "csrf": "c", "via": "token", "mac": "0" * 64},
    ],
)
def test_a_session_written_into_redis_by_someone_else_is_refused_and_deleted(
    app, redis_client, record
):
    forged = "forged-session-id-" + "x" * 30
    redis_client.set(session_key(forged), json.dumps(record), ex=3600)
    assert refused(app, forged)
    assert redis_client.exists(session_key(forged)) == 0


def test_a_session_whose_record_was_changed_in_redis_is_refused_and_deleted(app, redis_client):
    session_id = as_user(app, "victor")
    key = session_key(session_id)
    record = json.loads(redis_client.get(key))
    assert record["role"] == "viewer"
    redis_client.set(key, json.dumps({**record, "role": "operator"}), keepttl=True)
    assert refused(app, session_id)
    assert redis_client.exists(key) == 0


def test_a_signed_record_copied_under_another_id_is_refused(app, redis_client):
    genuine = as_user(app, "alice")
    stolen = "someone-elses-id-" + "y" * 30
    redis_client.set(session_key(stolen), redis_client.get(session_key(genuine)), ex=3600)
    assert refused(app, stolen) and redis_client.exists(session_key(stolen)) == 0
    assert accepted(app, genuine)


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"user": 1}', b"\xff\xfe"])
def test_a_garbled_session_record_is_refused_and_deleted(app, redis_client, raw):
    session_id = "garbled-" + "z" * 40
    redis_client.set(session_key(session_id), raw, ex=3600)
    assert refused(app, session_id)
    assert redis_client.exists(session_key(session_id)) == 0


def test_replicas_with_the_same_secret_share_sessions_and_another_secret_refuses_them(
    make_settings, users_file, redis_client
):
    one = create_app(make_settings(users_file=users_file, session_secret=SECRET), policy=Policy())
    two = create_app(make_settings(users_file=users_file, session_secret=SECRET), policy=Policy())
    session_id = as_user(one, "alice")
    assert accepted(two, session_id)
    other = create_app(
        make_settings(users_file=users_file, session_secret="another-secret-" + "s" * 20),
        policy=Policy(),
    )
    assert refused(other, session_id)
    assert redis_client.exists(session_key(session_id)) == 0


def test_gunicorn_workers_agree_on_sessions_and_refuse_a_forged_one(receiver_server, redis_client):
    with requests.Session() as browser:
        page = browser.get(receiver_server.url + "/login", timeout=5).text
        nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)
        answer = browser.post(
            receiver_server.url + "/login",
            data={"nonce": nonce, "token": API_TOKEN},
            allow_redirects=False,
            timeout=5,
        )
        assert answer.status_code == 303
        # Three worker processes: each request may land on any of them.
        codes = {
            browser.get(receiver_server.url + "/api/v1/automation", timeout=5).status_code
            for _ in range(12)
        }
        assert codes == {200}
    forged = "forged-over-http-" + "f" * 30
    record = {"user": "token", "role": "operator", "csrf": "c" * 43, "via": "token"}
    redis_client.set(session_key(forged), json.dumps(record), ex=3600)
    answer = requests.get(
        receiver_server.url + "/api/v1/automation",
        cookies={"backstop_session": forged},
        timeout=5,
    )
    assert answer.status_code == 401
    assert redis_client.exists(session_key(forged)) == 0


# -- ended when the credentials change (5) ---------------------------------------------------


def test_a_token_session_ends_when_another_instance_runs_with_a_rotated_token(
    make_settings, users_file, redis_client
):
    settings = {"users_file": users_file, "session_secret": SECRET}
    before = create_app(make_settings(**settings), policy=Policy())
    after = create_app(make_settings(api_token="rotated-api-token", **settings), policy=Policy())
    session_id = log_in(before, token=API_TOKEN)
    password_session = as_user(before, "alice")
    assert accepted(before, session_id)
    assert refused(after, session_id)
    assert redis_client.exists(session_key(session_id)) == 0
    assert accepted(after, password_session)  # the users file did not change


def test_rotating_the_token_without_a_session_secret_ends_every_session(
    make_settings, users_file, redis_client
):
    before = create_app(make_settings(users_file=users_file), policy=Policy())
    after = create_app(
        make_settings(users_file=users_file, api_token="rotated-api-token"), policy=Policy()
    )
    sessions = [log_in(before, token=API_TOKEN), as_user(before, "alice")]
    for session_id in sessions:
        assert refused(after, session_id)
        assert redis_client.exists(session_key(session_id)) == 0


@pytest.mark.parametrize(
    "change",
    ["removed", "new password", "new role"],
)
def test_a_password_session_ends_when_its_users_file_entry_changes(
    make_settings, users_file, tmp_path, redis_client, change
):
    before = create_app(make_settings(users_file=users_file), policy=Policy())
    alice, victor = as_user(before, "alice"), as_user(before, "victor")
    entries = {name: (ROLES[name], HASHES[name]) for name in PASSWORDS}
    if change == "removed":
        del entries["alice"]
    elif change == "new password":
        entries["alice"] = ("operator", generate_password_hash("a-brand-new-password"))
    else:
        entries["alice"] = ("viewer", HASHES["alice"])
    changed = users_yaml(tmp_path / "changed.yaml", entries)
    after = create_app(make_settings(users_file=changed), policy=Policy())
    assert refused(after, alice)
    assert redis_client.exists(session_key(alice)) == 0
    assert accepted(after, victor) and accepted(before, victor)
