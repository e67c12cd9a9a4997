"""R5, from the published contract: schemathesis generates requests from the OpenAPI
document (receiver/openapi.py), valid ones and invalid ones, for every operation, and sends
them to the real app on a real Redis. For every answer:

- never a 5xx (Redis is up here, so not even 503);
- its status is one the document lists for the operation, its content type and body match
  the documented schema (the error envelope for refusals);
- a request the document calls invalid is refused (4xx);
- a refused request stored nothing: Redis's write counter and key count are unchanged.

Sizes: BACKSTOP_FUZZ_PROFILE=ci (the default, `make test`): a fixed seed, a few examples
per operation and generation mode, about a minute on 2 cores; "full" (`make fuzz`): ten
times as many, and the seed varies.
"""

import copy
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from config.policy import Policy
from core.intake import flush_all
from receiver.app import create_app
from receiver.openapi import document
from tests.secrets import API_TOKEN, GATE_TOKEN, WEBHOOK_TOKEN

pytestmark = pytest.mark.integration

PROFILE = os.environ.get("BACKSTOP_FUZZ_PROFILE", "ci")
EXAMPLES = {"ci": 10, "full": 100}[PROFILE]
MAX_BODY = 64 * 1024  # small, so that oversized bodies are cheap to generate
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

CONFIG = schemathesis.Config.from_dict(
    {
        # `make test` repeats one seeded run; `make fuzz` draws a new seed each time (its
        # key left out: schemathesis refuses a null seed) and reports it with a failure.
        **({"seed": 24} if PROFILE == "ci" else {}),
        # The coverage phase sends hundreds of boundary cases per operation whatever
        # max-examples says: too many for `make test`; `make fuzz` runs it.
        "phases": {"coverage": {"enabled": PROFILE == "full"}},
        "generation": {"mode": "all", "max-examples": EXAMPLES, "database": "none"},
        # The credentials, per security scheme: schemathesis then sends them as they are
        # instead of generating (and, for negative cases, breaking) its own.
        "auth": {
            "openapi": {
                "apiToken": {"bearer": API_TOKEN},
                "webhookToken": {"bearer": WEBHOOK_TOKEN},
                "gateToken": {"bearer": GATE_TOKEN},
            }
        },
    }
)
schema = schemathesis.openapi.from_dict(copy.deepcopy(document()), config=CONFIG)


@pytest.fixture
def live_app(make_settings):
    """The app with every feature on (gate token, admission webhook) and a small body
    limit; the API, webhook and gate tokens of tests/secrets.py."""
    settings = make_settings(gate_token=GATE_TOKEN, admission=True, max_body_bytes=MAX_BODY)
    return create_app(settings, policy=Policy())


def writes(redis_client) -> tuple[int, int]:
    """Redis's write counter and key count: both unchanged means nothing was written."""
    changes = redis_client.info("persistence")["rdb_changes_since_last_save"]
    return changes, redis_client.dbsize()


def credentials(path: str) -> dict[str, str]:
    """The webhook token for webhooks, the API token (good for every other route)."""
    token = WEBHOOK_TOKEN if path.startswith("/webhooks/") else API_TOKEN
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(
    deadline=None,
    derandomize=PROFILE == "ci",
    suppress_health_check=list(HealthCheck),
)
def test_contract(case, live_app, redis_client):
    """Every generated request gets a documented answer; a refused one stores nothing."""
    headers = credentials(case.path)
    flush_all()  # what accepted webhooks left to the write-behind flusher, recorded now
    before = writes(redis_client)
    response = case.call(app=live_app, headers=headers)
    case.validate_response(response, checks=CHECKS, headers=headers)
    if response.status_code >= 400:
        flush_all()
        assert writes(redis_client) == before, f"{response.status_code} stored something"
