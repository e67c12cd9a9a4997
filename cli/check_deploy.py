"""`backstop check-deploy`: may these images deploy, or did Backstop roll them back?

A pipeline's pre-deploy step asks the receiver (`GET /api/v1/quarantine/check`) with the
gate token (or the webhook or API token) and stops when an image is quarantined:

    backstop check-deploy --url https://backstop.example.com \\
        --image registry.example.com/shop/checkout:2.1 --workload shop/Deployment/checkout

Exit 0: every image may deploy. Exit 1: one is quarantined (a line per image says which
rollback and Jira issue keep it out). Exit 2: the question could not be asked (no URL or
token, Backstop unreachable, an error answer); the pipeline decides what that means.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from cli.terminal import printable

TOKEN_VARIABLES = ("BACKSTOP_GATE_TOKEN", "BACKSTOP_WEBHOOK_TOKEN", "BACKSTOP_API_TOKEN")
TIMEOUT = 10.0
MAX_ANSWER = 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's options on `parser`."""
    parser.add_argument("--url", help="Backstop's base URL (default: $BACKSTOP_URL)")
    parser.add_argument(
        "--image", action="append", required=True, help="an image reference to deploy (repeat)"
    )
    parser.add_argument("--workload", help="namespace/kind/name: only its quarantines count")
    parser.add_argument(
        "--token-file",
        type=Path,
        help="file holding the token (default: $BACKSTOP_GATE_TOKEN, else the webhook or "
        "API token from the environment)",
    )


def main(args: argparse.Namespace) -> int:
    """Ask, print the answer, and exit 0, 1 or 2 (see the module's docstring)."""
    base = args.url or os.environ.get("BACKSTOP_URL")
    if not base or urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        return _cannot("give Backstop's http(s) URL: --url or BACKSTOP_URL")
    token = _token(args.token_file)
    if not token:
        return _cannot(f"no token: --token-file or one of {', '.join(TOKEN_VARIABLES)}")
    query = urllib.parse.urlencode(
        [("image", image) for image in args.image]
        + ([("workload", args.workload)] if args.workload else [])
    )
    url = f"{base.rstrip('/')}/api/v1/quarantine/check?{query}"
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310
            body = json.loads(answer.read(MAX_ANSWER))
    except urllib.error.HTTPError as exc:
        return _cannot(f"Backstop answered {exc.code}: {_error(exc)}")
    except (OSError, ValueError) as exc:
        return _cannot(f"Backstop could not be asked: {exc}")
    return _report(body)


def _token(path: Path | None) -> str:
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError:
            return ""
    return next((os.environ[v] for v in TOKEN_VARIABLES if os.environ.get(v)), "")


def _report(body: dict) -> int:
    if body.get("allowed") is True:
        for image in body.get("images", []):
            print(f"ok: {printable(image)} is not quarantined")
        return 0
    for found in body.get("quarantined", []):
        shown = {key: printable(value) for key, value in found.items()}
        jira = f", {shown['jira']}" if found.get("jira") else ""
        print(
            f"quarantined: {shown.get('image')}: {shown.get('why')} (rollback "
            f"{shown.get('rollback_id')} of {shown.get('workload')} revision "
            f"{shown.get('revision')}{jira}; until {shown.get('expires_at')} unless released)"
        )
    return 1


def _error(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read(MAX_ANSWER))["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return exc.reason


def _cannot(message: str) -> int:
    print(f"check-deploy: {message}", file=sys.stderr)
    return 2
