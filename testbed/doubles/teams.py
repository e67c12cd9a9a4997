"""A Microsoft Teams Workflows webhook double on loopback: the "When a Teams webhook request
is received" trigger of a flow that posts the card it is sent in a channel.

    with TeamsDouble() as teams:
        requests.post(teams.webhook_url, json={"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]})

`POST /workflows/<id>/triggers/manual/paths/invoke?api-version=1&sp=...&sv=1.0&sig=<sig>`:
202 Accepted with an empty body once the flow takes the request; 401 when `sig` is not the
trigger's (`{"error": {"code": "DirectApiAuthorizationRequired", ...}}`); 404 for another
workflow id (`WorkflowNotFound`).

The message must be `{"type": "message", "attachments": [...]}` with at least one attachment
of contentType `application/vnd.microsoft.card.adaptive` whose `content` is an Adaptive Card:
`type` `AdaptiveCard`, a `version` 1.0-1.5, a `body` list of known elements (TextBlock with
`text`, RichTextBlock of TextRuns, FactSet of `{title, value}` strings, Container, ColumnSet,
Image with an http(s) `url`, ActionSet), actions of known types (Action.OpenUrl with a title
and an http(s) url), 28 KB at most for the message. The real trigger answers 202 and the
flow run fails later on such a card; the double answers 400 (`InvalidRequestContent`, what
is wrong in its message) so that a test sees it, and keeps it in `refused`.

Failures: fail_with(429, retry_after=s) answers 429 with Retry-After (Power Automate's
throttling), fail_with(502) a 502; down() refuses connections; slow() delays.
"""

from __future__ import annotations

import json
import re
from typing import Any

from testbed.doubles.base import HttpDouble, Request, Response, Route, json_response

WORKFLOW_ID = "0f3d1b7c9a2e4c6b8d0f1a3c5e7b9d21"
SIGNATURE = "teams-double-trigger-signature"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_MESSAGE_BYTES = 28 * 1024
VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")
ACTIONS = frozenset({"Action.OpenUrl", "Action.Submit", "Action.ShowCard", "Action.Execute"})


class TeamsDouble(HttpDouble):
    """One Workflows webhook trigger on loopback (plain HTTP)."""

    def __init__(self, *, signature: str = SIGNATURE) -> None:
        super().__init__()
        self.signature = signature
        self._cards: list[dict[str, Any]] = []
        self._refused: list[tuple[str, Any]] = []
        path = "/workflows/(?P<workflow>[^/]+)/triggers/manual/paths/invoke"
        self._routes: list[Route] = [("POST", re.compile(path), self._invoke)]

    @property
    def webhook_url(self) -> str:
        """The trigger's URL, signature included (a secret, as Teams' are)."""
        return (
            f"{self.url}/workflows/{WORKFLOW_ID}/triggers/manual/paths/invoke"
            f"?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={self.signature}"
        )

    @property
    def cards(self) -> list[dict[str, Any]]:
        """Every card posted, oldest first."""
        with self._lock:
            return list(self._cards)

    @property
    def refused(self) -> list[tuple[str, Any]]:
        """(why, body) of every message the flow would have failed to post."""
        with self._lock:
            return list(self._refused)

    def routes(self) -> list[Route]:
        """The trigger."""
        return self._routes

    def failure_response(self, status: int) -> Response:
        """Power Automate's error document."""
        code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
        return json_response(status, {"error": {"code": code, "message": code}})

    def not_found(self, request: Request) -> Response:
        """What Power Automate answers for a path it does not serve."""
        return _error(404, "WorkflowNotFound", "The workflow was not found.")

    def _invoke(self, request: Request, workflow: str) -> Response:
        if workflow != WORKFLOW_ID:
            return _error(404, "WorkflowNotFound", "The workflow was not found.")
        if request.param("sig") != self.signature:
            return _error(
                401, "DirectApiAuthorizationRequired", "The request must be authenticated."
            )
        try:
            body = json.loads(request.body)
        except ValueError:
            return self._refuse("the body is not JSON", None)
        if request.body_size > MAX_MESSAGE_BYTES:
            return self._refuse(f"the message is over {MAX_MESSAGE_BYTES} bytes", body)
        problems = message_errors(body)
        if problems:
            return self._refuse("; ".join(problems), body)
        for attachment in body["attachments"]:
            self._cards.append(attachment["content"])
        return Response(202, b"", content_type="text/plain")

    def _refuse(self, why: str, body: Any) -> Response:
        self._refused.append((why, body))
        return _error(400, "InvalidRequestContent", why)


def _error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}})


def message_errors(body: Any) -> list[str]:
    """Why the flow would fail to post this message (empty when it would post it)."""
    if not isinstance(body, dict) or body.get("type") != "message":
        return ["type: must be message"]
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return ["attachments: at least one"]
    errors = []
    for index, attachment in enumerate(attachments):
        where = f"attachments[{index}]"
        if not isinstance(attachment, dict) or attachment.get("contentType") != CARD_TYPE:
            errors.append(f"{where}.contentType: must be {CARD_TYPE}")
            continue
        errors += [f"{where}.content{e}" for e in card_errors(attachment.get("content"))]
    return errors


def card_errors(card: Any) -> list[str]:
    """Every reason an Adaptive Card would not render."""
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        return [".type: must be AdaptiveCard"]
    errors = []
    if card.get("version") not in VERSIONS:
        errors.append(f".version: one of {', '.join(VERSIONS)}")
    body = card.get("body")
    if not isinstance(body, list):
        errors.append(".body: a list of elements")
    else:
        errors += _elements(body, ".body")
    for index, action in enumerate(card.get("actions") or []):
        errors += _action(action, f".actions[{index}]")
    return errors


def _elements(items: list, where: str) -> list[str]:
    errors = []
    for index, item in enumerate(items):
        errors += _element(item, f"{where}[{index}]")
    return errors


def _element(item: Any, where: str) -> list[str]:
    kind = item.get("type") if isinstance(item, dict) else None
    if kind == "TextBlock":
        return [] if isinstance(item.get("text"), str) else [f"{where}.text: a string"]
    if kind == "RichTextBlock":
        inlines = item.get("inlines")
        if not isinstance(inlines, list) or not inlines:
            return [f"{where}.inlines: a list of TextRuns"]
        return [
            f"{where}.inlines[{i}]: a TextRun with text"
            for i, run in enumerate(inlines)
            if not (
                isinstance(run, str)
                or (
                    isinstance(run, dict)
                    and run.get("type") == "TextRun"
                    and isinstance(run.get("text"), str)
                )
            )
        ]
    if kind == "FactSet":
        facts = item.get("facts")
        if not isinstance(facts, list) or not facts:
            return [f"{where}.facts: a list of facts"]
        return [
            f"{where}.facts[{i}]: title and value strings"
            for i, fact in enumerate(facts)
            if not (
                isinstance(fact, dict)
                and all(isinstance(fact.get(k), str) for k in ("title", "value"))
            )
        ]
    if kind == "Container":
        return _elements(item.get("items") or [], f"{where}.items")
    if kind == "ColumnSet":
        errors = []
        for i, column in enumerate(item.get("columns") or []):
            errors += _elements(column.get("items") or [], f"{where}.columns[{i}].items")
        return errors
    if kind == "Image":
        return [] if _http(item.get("url")) else [f"{where}.url: an http(s) URL"]
    if kind == "ActionSet":
        errors = []
        for i, action in enumerate(item.get("actions") or []):
            errors += _action(action, f"{where}.actions[{i}]")
        return errors
    return [f"{where}.type: unknown element {kind!r}"]


def _action(action: Any, where: str) -> list[str]:
    kind = action.get("type") if isinstance(action, dict) else None
    if kind not in ACTIONS:
        return [f"{where}.type: unknown action {kind!r}"]
    if kind == "Action.OpenUrl":
        errors = [] if _http(action.get("url")) else [f"{where}.url: an http(s) URL"]
        if not isinstance(action.get("title"), str):
            errors.append(f"{where}.title: a string")
        return errors
    return []


def _http(url: Any) -> bool:
    return isinstance(url, str) and re.match(r"https?://[^\s/]+", url) is not None
