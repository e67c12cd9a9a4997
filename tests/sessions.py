"""A dashboard session for HTTP tests: log in through the login form, as a browser does."""

import re

from tests.secrets import DASHBOARD_PASSWORDS


def logged_in(app, name: str):
    """A test client with a dashboard session of user `name` (tests/secrets.py), and the
    CSRF token its pages carry."""
    client = app.test_client()
    nonce = re.search(r'name="nonce" value="([^"]+)"', client.get("/login").text).group(1)
    answer = client.post(
        "/login", data={"nonce": nonce, "username": name, "password": DASHBOARD_PASSWORDS[name]}
    )
    assert answer.status_code == 303, answer.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)
    return client, csrf
