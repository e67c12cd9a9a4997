"""Microsoft Teams: a Workflows webhook (the "When a Teams webhook request is received"
trigger) that posts an Adaptive Card to a channel or chat, one message per post.

The request is `{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <card>}]}`; the workflow answers 202
Accepted (200 from some flows) and posts the card on its own. Its URL carries the
trigger's signature (`sig=`): a secret, never logged or quoted.

Errors, beyond those of every chat request (core/integrations/chat.py: connection failures,
429 with Retry-After, 5xx): any other 4xx (400 an invalid request, 401/403 a signature that
no longer holds, 404 a deleted workflow) → PermanentError. No network call happens in the
constructor.
"""

import requests
from pydantic import SecretStr

from core.errors import PermanentError
from core.integrations.chat import error_text, post_json, session

TEAMS = "Teams"
CARD = "application/vnd.microsoft.card.adaptive"


class TeamsWorkflow:
    """Posts Adaptive Cards through one Workflows webhook."""

    def __init__(self, url: SecretStr):
        self._url = url
        self._http: requests.Session | None = None

    def post(self, *, card: dict) -> None:
        """Post one message carrying `card`."""
        self._http = self._http or session()
        body = {
            "type": "message",
            "attachments": [{"contentType": CARD, "contentUrl": None, "content": card}],
        }
        response = post_json(self._http, TEAMS, self._url, body)
        if response.status_code not in (200, 202):
            raise PermanentError(
                f"Teams refused the card ({response.status_code}): "
                f"{error_text(response, self._url)}"
            )
