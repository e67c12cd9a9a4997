"""Slack: an incoming webhook (one message per post), or the Web API with a bot token
(`chat.postMessage` once, then `chat.update` of that message as the rollback goes on).

Errors, beyond those of every chat request (core/integrations/chat.py: connection failures,
429 with Retry-After, 5xx): an incoming webhook answers 200 `ok`, or an error word with
400 (`invalid_payload`, `invalid_blocks`, `no_text`), 403 (`action_prohibited`,
`invalid_token`), 404 (`channel_not_found`, `no_service`) or 410 (`channel_is_archived`)
→ PermanentError. The Web API answers HTTP 200 with `{"ok": false, "error": ...}`:
`ratelimited` → RateLimited; `internal_error`, `fatal_error`, `service_unavailable`,
`request_timeout` → TransientError; a message that can no longer be updated
(`message_not_found`, `cant_update_message`, `edit_window_closed`) → MessageGone, so the
caller posts a new one; anything else (`invalid_auth`, `not_in_channel`,
`channel_not_found`, `invalid_blocks`, ...) → PermanentError. No network call happens in
a constructor. Link previews are off: a message's links come partly from outside.
"""

from dataclasses import dataclass

import requests
from pydantic import SecretStr

from core.errors import PermanentError, TransientError
from core.integrations.chat import RateLimited, error_text, post_json, quoted, session

SLACK = "Slack"
_TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


class MessageGone(PermanentError):
    """The message to update is gone or may no longer be edited."""


@dataclass(frozen=True)
class Posted:
    """Where a bot's message is: the channel's ID and the message's `ts`."""

    channel: str
    ts: str


class SlackWebhook:
    """Posts messages to the one channel of an incoming webhook."""

    def __init__(self, url: SecretStr):
        self._url = url
        self._http: requests.Session | None = None

    def post(self, *, text: str, blocks: list[dict]) -> None:
        """Post one message: `text` is the notification's, `blocks` what people see."""
        self._http = self._http or session()
        body = {"text": text, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}
        response = post_json(self._http, SLACK, self._url, body)
        if response.status_code != 200:
            raise PermanentError(
                f"Slack refused the message ({response.status_code}): "
                f"{error_text(response, self._url)}"
            )


class SlackBot:
    """Posts and updates messages with a bot token (scope `chat:write`)."""

    def __init__(self, token: SecretStr, *, api_url: str = "https://slack.com/api"):
        self._token = token
        self._api = api_url.rstrip("/")
        self._http: requests.Session | None = None

    def post(
        self, *, channel: str, text: str, blocks: list[dict], thread_ts: str | None = None
    ) -> Posted:
        """Post a message (a reply in the thread of `thread_ts` when given)."""
        body = {
            "channel": channel,
            "text": text,
            "blocks": blocks,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if thread_ts:
            body["thread_ts"] = thread_ts
        answer = self._call("chat.postMessage", body)
        ts, where = answer.get("ts"), answer.get("channel")
        if not isinstance(ts, str) or not isinstance(where, str) or not ts or not where:
            raise TransientError("Slack answered chat.postMessage without channel and ts")
        return Posted(where, ts)

    def update(self, *, channel: str, ts: str, text: str, blocks: list[dict]) -> None:
        """Replace the text and blocks of the message `ts` in `channel` (its ID)."""
        self._call("chat.update", {"channel": channel, "ts": ts, "text": text, "blocks": blocks})

    def _call(self, method: str, body: dict) -> dict:
        self._http = self._http or session()
        headers = {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "Content-Type": "application/json; charset=utf-8",
        }
        response = post_json(self._http, SLACK, f"{self._api}/{method}", body, headers=headers)
        if response.status_code != 200:
            raise PermanentError(
                f"Slack refused {method} ({response.status_code}): {quoted(response.text)}"
            )
        try:
            answer = response.json()
        except ValueError:
            raise TransientError(f"Slack answered {method} with no JSON") from None
        if not isinstance(answer, dict):
            raise TransientError(f"Slack answered {method} with no JSON object")
        if answer.get("ok") is True:
            return answer
        error = quoted(str(answer.get("error") or "unknown_error"))
        if error == "ratelimited":
            raise RateLimited(f"Slack rate limited {method}")
        if error in _TRANSIENT:
            raise TransientError(f"Slack failed {method}: {error}")
        if error in _GONE:
            raise MessageGone(f"Slack cannot update the message: {error}")
        raise PermanentError(f"Slack refused {method}: {error}")
