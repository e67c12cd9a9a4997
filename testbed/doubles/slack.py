"""A Slack test double on loopback: incoming webhooks and the Web API's `chat.postMessage`
and `chat.update`, as Slack answers them.

    with SlackDouble() as slack:
        requests.post(slack.webhook_url, json={"text": "hi"})           # 200 "ok"
        requests.post(f"{slack.api_url}/chat.postMessage",
                      headers={"Authorization": f"Bearer {slack.bot_token}"},
                      json={"channel": slack.channel, "text": "hi"})     # 200 {"ok": true, "ts"}

Incoming webhook (`POST /services/<team>/<bot>/<secret>`): 200 with the text `ok`; else an
error word as Slack sends it: 400 `invalid_payload` (not a JSON object), `no_text` (neither
text nor blocks), `invalid_blocks` (see below); 404 `no_service` for an unknown webhook.

Web API (`POST /api/chat.postMessage`, `/api/chat.update`, JSON, `Authorization: Bearer`):
HTTP 200 with `{"ok": true, "channel", "ts", ...}` or `{"ok": false, "error"}`: `not_authed`
(no token), `invalid_auth` (another), `channel_not_found` (a channel the double does not
have; postMessage takes its ID or `#name`, update only the ID, as Slack), `no_text`,
`msg_too_long` (text over 40,000 characters), `invalid_blocks`, `message_not_found` (an
update of an unknown ts), `thread_not_found`.

Block Kit is checked as Slack checks it: `blocks` a list of at most 50 blocks of known
types; header: a plain_text of 1-150 characters; section: a text object (up to 3000) and/or
1-10 fields (up to 2000 each); context: 1-10 text or image elements; actions: 1-25
elements, buttons with plain_text of up to 75 and a url up to 3000; text objects
`plain_text` or `mrkdwn` with 1-3000 characters, `emoji` only on plain_text, `verbatim` only
on mrkdwn; block_id up to 255. Every message, and each update's earlier version, is kept.

Failures: fail_with(429, retry_after=s) answers 429 `{"ok": false, "error": "ratelimited"}`
with Retry-After; fail_with(500) a 500; down() refuses connections; slow() delays.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from testbed.doubles.base import HttpDouble, Request, Response, Route, json_response

# The double's own credentials: a webhook's secret path part and a bot token.
WEBHOOK_SECRET = "slack-webhook-secret-0xB5"
BOT_TOKEN = "xoxb-slack-double-bot-token"
CHANNEL_ID, CHANNEL_NAME = "C0BACKSTOP", "ops"
WEBHOOK_PATH = f"/services/T0BACKSTOP/B0BACKSTOP/{WEBHOOK_SECRET}"

MAX_BLOCKS, MAX_TEXT = 50, 40_000
BLOCK_TYPES = frozenset(
    {"section", "header", "context", "divider", "actions", "image", "rich_text", "markdown"}
)


@dataclass
class Message:
    """A message as Slack keeps it, with each update's earlier version."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    via: str  # "webhook" or "api"
    thread_ts: str | None = None
    versions: list[dict[str, Any]] = field(default_factory=list)


class SlackDouble(HttpDouble):
    """Incoming webhooks and chat.postMessage / chat.update on loopback (plain HTTP)."""

    def __init__(self, *, bot_token: str = BOT_TOKEN) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.channel = CHANNEL_ID
        self._channels = {CHANNEL_ID: CHANNEL_NAME}
        self._messages: list[Message] = []
        self._clock = itertools.count(1)
        self._routes: list[Route] = [
            ("POST", re.compile(r"/services/[^/]+/[^/]+/[^/]+"), self._webhook),
            ("POST", re.compile(r"/api/chat\.postMessage"), self._post_message),
            ("POST", re.compile(r"/api/chat\.update"), self._update),
        ]

    @property
    def webhook_url(self) -> str:
        """The incoming webhook's URL (a secret, as Slack's are)."""
        return f"{self.url}{WEBHOOK_PATH}"

    @property
    def api_url(self) -> str:
        """The Web API's base URL (Slack's is https://slack.com/api)."""
        return f"{self.url}/api"

    @property
    def messages(self) -> list[Message]:
        """Every message posted (replies included), oldest first."""
        with self._lock:
            return list(self._messages)

    def routes(self) -> list[Route]:
        """The webhook and the two Web API methods."""
        return self._routes

    def failure_response(self, status: int) -> Response:
        """Slack's error document for an injected failure."""
        error = "ratelimited" if status == 429 else "internal_error"
        return json_response(status, {"ok": False, "error": error})

    def not_found(self, request: Request) -> Response:
        """What Slack answers for a method it does not have."""
        return json_response(404, {"ok": False, "error": "unknown_method"})

    # -- incoming webhook ------------------------------------------------------------------

    def _webhook(self, request: Request) -> Response:
        if request.path != WEBHOOK_PATH:
            return _words(404, "no_service")
        body = _json_object(request)
        if body is None:
            return _words(400, "invalid_payload")
        error = _message_error(body)
        if error:
            return _words(400, error)
        text, blocks = body.get("text") or "", body.get("blocks") or []
        self._keep(Message(CHANNEL_ID, self._ts(), text, blocks, "webhook"))
        return _words(200, "ok")

    # -- Web API ---------------------------------------------------------------------------

    def _post_message(self, request: Request) -> Response:
        body, refused = self._api_call(request)
        if refused:
            return refused
        channel = self._channel(body.get("channel"), by_name=True)
        if channel is None:
            return _api_error("channel_not_found")
        error = _message_error(body)
        if error:
            return _api_error(error)
        thread_ts = body.get("thread_ts")
        if thread_ts is not None and self._find(channel, thread_ts) is None:
            return _api_error("thread_not_found")
        text, blocks = body.get("text") or "", body.get("blocks") or []
        message = Message(channel, self._ts(), text, blocks, "api", thread_ts)
        self._keep(message)
        return json_response(
            200,
            {"ok": True, "channel": channel, "ts": message.ts, "message": _shown(message)},
        )

    def _update(self, request: Request) -> Response:
        body, refused = self._api_call(request)
        if refused:
            return refused
        channel = self._channel(body.get("channel"), by_name=False)
        if channel is None:
            return _api_error("channel_not_found")
        message = self._find(channel, body.get("ts"))
        if message is None:
            return _api_error("message_not_found")
        error = _message_error(body)
        if error:
            return _api_error(error)
        message.versions.append({"text": message.text, "blocks": message.blocks})
        message.text = body.get("text") or ""
        message.blocks = body.get("blocks") or []
        return json_response(
            200, {"ok": True, "channel": channel, "ts": message.ts, "text": message.text}
        )

    def _api_call(self, request: Request) -> tuple[dict[str, Any], Response | None]:
        """The call's JSON body, or the answer refusing it (its token: authorize())."""
        body = _json_object(request)
        if body is None:
            return {}, _api_error("invalid_json")
        return body, None

    def authorize(self, request: Request, authorization: str | None) -> Response | None:
        """The Web API needs this double's bot token; webhooks carry their secret in the URL."""
        if not request.path.startswith("/api/"):
            return None
        if not authorization:
            return _api_error("not_authed")
        if authorization != f"Bearer {self.bot_token}":
            return _api_error("invalid_auth")
        return None

    # -- state -----------------------------------------------------------------------------

    def _channel(self, value: Any, *, by_name: bool) -> str | None:
        if not isinstance(value, str):
            return None
        if value in self._channels:
            return value
        if by_name:
            name = value.removeprefix("#")
            return next((i for i, n in self._channels.items() if n == name), None)
        return None

    def _find(self, channel: str, ts: Any) -> Message | None:
        return next(
            (m for m in self._messages if m.channel == channel and m.ts == ts and m.via == "api"),
            None,
        )

    def _keep(self, message: Message) -> None:
        self._messages.append(message)

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._clock):06d}"


def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(request.body)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _words(status: int, word: str) -> Response:
    """An incoming webhook's answer: a bare word as text."""
    return Response(status, word.encode(), content_type="text/html")


def _api_error(error: str) -> Response:
    return json_response(200, {"ok": False, "error": error})


def _shown(message: Message) -> dict[str, Any]:
    return {"type": "message", "text": message.text, "ts": message.ts, "blocks": message.blocks}


def _message_error(body: dict[str, Any]) -> str | None:
    """Why Slack would refuse this message, or None."""
    text, blocks = body.get("text"), body.get("blocks")
    if text is not None and not isinstance(text, str):
        return "invalid_arguments"
    if not text and not blocks:
        return "no_text"
    if text and len(text) > MAX_TEXT:
        return "msg_too_long"
    if blocks is not None and block_errors(blocks):
        return "invalid_blocks"
    return None


def block_errors(blocks: Any) -> list[str]:
    """Every reason Slack would refuse `blocks` (empty when it would take them)."""
    if not isinstance(blocks, list):
        return ["blocks must be an array"]
    if len(blocks) > MAX_BLOCKS:
        return [f"more than {MAX_BLOCKS} blocks"]
    errors = []
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            errors.append(f"{where}: unknown block type")
            continue
        block_id = block.get("block_id")
        if block_id is not None and (not isinstance(block_id, str) or len(block_id) > 255):
            errors.append(f"{where}.block_id: a string of up to 255 characters")
        errors += [f"{where}{e}" for e in _block_errors(block)]
    return errors


def _block_errors(block: dict[str, Any]) -> list[str]:
    kind = block["type"]
    if kind == "header":
        return _text_errors(block.get("text"), 150, ".text", plain_only=True)
    if kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and fields is None:
            return [": a section needs text or fields"]
        errors = _text_errors(text, 3000, ".text") if text is not None else []
        if fields is not None:
            if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                return [*errors, ".fields: 1 to 10 text objects"]
            for i, item in enumerate(fields):
                errors += _text_errors(item, 2000, f".fields[{i}]")
        return errors
    if kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            return [".elements: 1 to 10 elements"]
        errors = []
        for i, item in enumerate(elements):
            if isinstance(item, dict) and item.get("type") == "image":
                continue
            errors += _text_errors(item, 3000, f".elements[{i}]")
        return errors
    if kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            return [".elements: 1 to 25 elements"]
        errors = []
        for i, item in enumerate(elements):
            if not isinstance(item, dict) or item.get("type") != "button":
                continue
            errors += _text_errors(item.get("text"), 75, f".elements[{i}].text", plain_only=True)
            url = item.get("url")
            if url is not None and (not isinstance(url, str) or len(url) > 3000):
                errors.append(f".elements[{i}].url: up to 3000 characters")
        return errors
    return []


def _text_errors(value: Any, limit: int, where: str, *, plain_only: bool = False) -> list[str]:
    """A text object's problems."""
    if not isinstance(value, dict) or value.get("type") not in ("plain_text", "mrkdwn"):
        return [f"{where}: not a text object"]
    if plain_only and value["type"] != "plain_text":
        return [f"{where}: must be plain_text"]
    text = value.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= limit:
        return [f"{where}.text: 1 to {limit} characters"]
    if "emoji" in value and value["type"] != "plain_text":
        return [f"{where}.emoji: only on plain_text"]
    if "verbatim" in value and value["type"] != "mrkdwn":
        return [f"{where}.verbatim: only on mrkdwn"]
    extra = set(value) - {"type", "text", "emoji", "verbatim"}
    return [f"{where}: unknown fields {sorted(extra)}"] if extra else []
