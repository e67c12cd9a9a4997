"""Browser tests of the dashboard: Debian's chromium, driven by Playwright, against the real
receiver under gunicorn on the test Redis.

One browser for the session, a fresh context (cookies, storage) per test. The receiver is
configured only through its environment, as in production: the tokens, a policy file and a
users file with an operator and a viewer, both written into the test's tmp_path.
"""

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from werkzeug.security import generate_password_hash

from testbed.processes import launch, terminate
from testbed.servers import Gunicorn
from tests.conftest import WEBHOOK_TOKEN
from tests.secrets import OPERATOR_PASSWORD, VIEWER_PASSWORD

ROOT = Path(__file__).resolve().parent.parent.parent
# Read now: the autouse `clean_environment` fixture removes BACKSTOP_* before each test runs.
WRITE_DOCS_SCREENSHOTS = os.environ.get("BACKSTOP_SCREENSHOTS") == "1"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

OPERATOR, VIEWER = "olivia", "victor"

# Pages replace their content every 5 s; anything a page only shows after an auto-refresh
# (work done by another process) gets this long to appear.
REFRESHED = 30_000

# How long Playwright's auto-waiting assertions wait unless told otherwise.
expect.set_options(timeout=10_000)


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium, headless, for the whole session."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def new_context(browser: Browser):
    """Open browser contexts (desktop light by default); all closed after the test."""
    opened: list[BrowserContext] = []

    def open_context(**options) -> BrowserContext:
        context = browser.new_context(**{"viewport": DESKTOP, **options})
        context.set_default_timeout(15_000)
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        context.close()


@pytest.fixture
def page(new_context) -> Page:
    """A page in a fresh desktop context."""
    return new_context().new_page()


@pytest.fixture
def users_file(tmp_path) -> Path:
    """The dashboard's users: an operator and a viewer, with hashed passwords."""
    path = tmp_path / "users.yaml"
    users = [
        {"name": name, "role": role, "password_hash": generate_password_hash(password)}
        for name, role, password in (
            (OPERATOR, "operator", OPERATOR_PASSWORD),
            (VIEWER, "viewer", VIEWER_PASSWORD),
        )
    ]
    path.write_text(yaml.safe_dump({"users": users}))
    return path


@pytest.fixture
def backstop(receiver_env, redis_url, users_file, tmp_path):
    """Start the receiver under gunicorn with a policy (a dict, written as the policy file);
    every server started is stopped after the test."""
    with contextlib.ExitStack() as running:
        servers: list[Gunicorn] = []

        def start(policy: dict) -> Gunicorn:
            config = tmp_path / f"policy-{len(servers)}.yaml"
            config.write_text(yaml.safe_dump(policy))
            env = {
                **receiver_env,
                "REDIS_URL": redis_url,
                "BACKSTOP_CONFIG": str(config),
                "BACKSTOP_USERS_FILE": str(users_file),
            }
            log = tmp_path / f"gunicorn-{len(servers)}.log"
            server = Gunicorn("receiver.app:create_app()", env, workers=2, log=log)
            servers.append(running.enter_context(server))
            return server

        yield start


@pytest.fixture
def worker_process(tmp_path):
    """Start `backstop worker` processes with an environment; stopped by pid afterwards."""
    started: list[subprocess.Popen] = []

    def start(env: dict[str, str]) -> subprocess.Popen:
        log = tmp_path / f"worker-{len(started)}.log"
        process = launch(
            [sys.executable, "-m", "cli.main", "worker"],
            log,
            env={**os.environ, **env},
            cwd=ROOT,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        terminate(process)


def log_in(
    page: Page,
    server: Gunicorn,
    *,
    username: str = "",
    password: str = "",
    token: str = "",
    here: bool = False,
) -> None:
    """Fill in and submit the login form (name and password, or the API token): the one
    on the page already when `here`, else a freshly opened one."""
    if not here:
        page.goto(f"{server.url}/login")
    if username:
        page.get_by_label("Name").fill(username)
        page.get_by_label("Password").fill(password)
    if token:
        page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()


def log_in_as(page: Page, server: Gunicorn, username: str, password: str) -> None:
    """Log in and wait for the overview."""
    log_in(page, server, username=username, password=password)
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()


def send_webhook(server: Gunicorn, path: str, body: dict) -> dict:
    """POST a webhook (alerts or a CI deployment event) with the webhook token."""
    answer = requests.post(
        f"{server.url}/webhooks/{path}",
        json=body,
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    return answer.json()


def post_from_page(page: Page, path: str, body: dict, csrf: str | None) -> dict:
    """fetch() a JSON POST from inside the page (its cookies), with or without a CSRF header;
    returns the status and the decoded answer."""
    return page.evaluate(
        """async ([path, body, csrf]) => {
            const headers = {"Content-Type": "application/json"};
            if (csrf !== null) headers["X-CSRF-Token"] = csrf;
            const response = await fetch(path, {
                method: "POST", credentials: "same-origin", headers, body: JSON.stringify(body),
            });
            return {status: response.status, body: await response.json()};
        }""",
        [path, body, csrf],
    )


def get_from_page(page: Page, path: str) -> dict:
    """fetch() a GET from inside the page (its session) and decode the JSON answer."""
    return page.evaluate(
        """async (path) => {
            const response = await fetch(path, {credentials: "same-origin"});
            return {status: response.status, body: await response.json()};
        }""",
        path,
    )


@pytest.fixture
def screenshot(tmp_path) -> Callable[[Page, str], Path]:
    """Save a screenshot of a page into tmp_path, and into docs/screenshots as well when
    BACKSTOP_SCREENSHOTS=1 (`make screenshots`)."""

    def take(page: Page, name: str, *, full_page: bool = False) -> Path:
        path = tmp_path / "screenshots" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        if WRITE_DOCS_SCREENSHOTS:
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (DOCS_SCREENSHOTS / path.name).write_bytes(path.read_bytes())
        return path

    return take
