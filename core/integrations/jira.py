"""Jira (REST v2) through the `jira` library: Cloud (e-mail + API token, basic auth) or
Server/Data Center (personal access token, bearer).

Errors: JIRAError with status 429 or 5xx, timeouts and connection errors → TransientError
(the incident job retries with backoff); any other status (400 invalid fields, 401, 403,
404) → PermanentError. The library's constructor calls the server, so the client is built
on first use, never in our constructor.
"""

import io

import requests
from jira import JIRA
from jira.exceptions import JIRAError

from config.settings import Settings
from core import markup
from core.errors import PermanentError, TimedOut, TransientError

TIMEOUT = 15


class Tickets:
    """Creates, finds, attaches to and comments on issues in one Jira."""

    def __init__(
        self, *, url: str, user: str | None = None, token: str | None = None, pat: str | None = None
    ):
        self._url = url
        self._auth = {"token_auth": pat} if pat else {"basic_auth": (user, token)}
        self._client: JIRA | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Tickets | None":
        """The Jira the settings configure, or None."""
        if not (settings.jira_configured and settings.jira_url):
            return None
        token, pat = settings.jira_token, settings.jira_pat
        return cls(
            url=settings.jira_url,
            user=settings.jira_user,
            token=token.get_secret_value() if token is not None else None,
            pat=pat.get_secret_value() if pat is not None else None,
        )

    def _jira(self) -> JIRA:
        if self._client is None:
            self._client = self._call(
                lambda: JIRA(server=self._url, timeout=TIMEOUT, max_retries=0, **self._auth)
            )
        return self._client

    @staticmethod
    def _call(action):
        try:
            return action()
        except JIRAError as exc:
            status = exc.status_code or 0
            if status == 429 or status >= 500 or status == 0:
                raise TransientError(f"Jira unavailable ({status or 'network'})") from None
            raise PermanentError(f"Jira refused ({status}): {exc.text}") from None
        except requests.Timeout as exc:  # before ConnectionError: ConnectTimeout is both
            raise TimedOut(f"Jira unreachable: {type(exc).__name__}") from None
        except requests.ConnectionError as exc:
            raise TransientError(f"Jira unreachable: {type(exc).__name__}") from None

    def find_by_label(self, *, project: str, label: str) -> str | None:
        """The key of the newest issue in `project` carrying `label`, if any."""
        jql = f'project = "{project}" AND labels = "{label}"'
        found = self._call(lambda: self._jira().search_issues(jql, maxResults=1))
        return found[0].key if found else None

    def create(
        self,
        *,
        project: str,
        issue_type: str,
        summary: str,
        description: str,
        labels: list[str],
        priority: str | None,
    ) -> str:
        """Create an issue; return its key."""
        fields = {
            "project": {"key": project},
            "issuetype": {"name": issue_type},
            "summary": markup.plain(summary)[:250],  # one line: Jira refuses line breaks
            "description": description,
            "labels": labels,
        }
        if priority:
            try:
                return self._call(
                    lambda: self._jira().create_issue(
                        fields={**fields, "priority": {"name": priority}}
                    )
                ).key
            except PermanentError:
                pass  # many projects hide priority from the create screen: file without it
        return self._call(lambda: self._jira().create_issue(fields=fields)).key

    def attach(self, *, issue_key: str, filename: str, data: bytes) -> None:
        """Attach a file to an issue."""
        self._call(
            lambda: self._jira().add_attachment(
                issue_key, attachment=io.BytesIO(data), filename=filename
            )
        )

    def attachment_names(self, *, issue_key: str) -> list[str]:
        """The file names of the issue's attachments."""
        issue = self._call(lambda: self._jira().issue(issue_key, fields="attachment"))
        return [attachment.filename for attachment in issue.fields.attachment or []]

    def comment(self, *, issue_key: str, body: str) -> None:
        """Comment on an issue."""
        self._call(lambda: self._jira().add_comment(issue_key, body))

    def status_category(self, *, issue_key: str) -> str:
        """The key of the issue's status category: `new`, `indeterminate` or `done`."""
        issue = self._call(lambda: self._jira().issue(issue_key, fields="status"))
        return str(issue.fields.status.statusCategory.key)

    def transition(self, *, issue_key: str, name: str) -> bool:
        """Apply the transition called `name` when the issue offers it."""
        transitions = self._call(lambda: self._jira().transitions(issue_key))
        match = next((t for t in transitions if t["name"].lower() == name.lower()), None)
        if match is None:
            return False
        self._call(lambda: self._jira().transition_issue(issue_key, match["id"]))
        return True
