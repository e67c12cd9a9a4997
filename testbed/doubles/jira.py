"""A Jira REST v2 test double: a real HTTP server on loopback for the real `jira` client.

Construct the real client against it (checked with jira 3.10.5)::

    from jira import JIRA

    with JiraDouble(mode="cloud") as double:  # Jira Cloud: e-mail + API token, basic auth
        client = JIRA(server=double.url, basic_auth=(double.email, double.api_token))
    with JiraDouble(mode="server") as double:  # Server / Data Center: personal access token
        client = JIRA(server=double.url, token_auth=double.pat)

The constructor calls GET /rest/api/2/serverInfo and keeps `deploymentType`; `search_issues`
then calls GET /rest/api/2/search/jql on Cloud (nextPageToken paging) and GET
/rest/api/2/search on Server (startAt paging), after one GET /rest/api/2/field. Each mode
serves only its own search path: Cloud answers 410 on /search (Atlassian removed it), Server
404 on /search/jql (it never existed there). Every endpoint needs the configured credentials
(basic on Cloud, Bearer on Server), serverInfo included, else 401.

Create issues with `project={"key": ...}` and `issuetype={"name": ...}`: a bare string makes
the client look the project and issue type up first, which the double does not serve.
JQL understands `field = value` and `field in (v1, v2)` clauses on labels, project, status
and key, joined with AND (labels compare exactly, the others ignore case); anything else is a
400. `search_lag` hides new issues from search for that many seconds, as Cloud's eventually
consistent index does, while GET issue sees them at once.

Failures: fail_with(status, count, retry_after=) answers with Jira's error body. The client
raises JIRAError(status_code=...) at once for other statuses, and retries 429 and 503 up to
`max_retries` times: after 2 x Retry-After seconds (at least 1, jittered) when the header is
there, else 503 is not retried and 429 waits 20 s and more, so use retry_after=0 in tests.
down() closes the socket: connects are refused, which the client also retries after 20 s and
more, so give it `max_retries=0` in such tests. slow(seconds) meets the client's `timeout=`.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import quote

from testbed.doubles.base import HttpDouble, Request, Response, Route, json_response

API = "/rest/api/2"

# The credentials a double accepts unless told others.
CLOUD_EMAIL = "backstop@example.com"
CLOUD_API_TOKEN = "jira-cloud-api-token"
SERVER_PAT = "jira-server-pat"

# name -> (id, category key, category id, category name), as a simplified workflow has them.
_STATUSES = {
    "To Do": ("10000", "new", 2, "To Do"),
    "In Progress": ("10001", "indeterminate", 4, "In Progress"),
    "Done": ("10002", "done", 3, "Done"),
}
_TRANSITIONS = {"11": "To Do", "21": "In Progress", "31": "Done"}

_FIELDS = [
    ("summary", "Summary", "string"),
    ("description", "Description", "string"),
    ("labels", "Labels", "array"),
    ("priority", "Priority", "priority"),
    ("status", "Status", "status"),
    ("project", "Project", "project"),
    ("issuetype", "Issue Type", "issuetype"),
]

_SEARCH_REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)


@dataclass
class Attachment:
    """A stored attachment with the bytes that were uploaded."""

    id: int
    issue_key: str
    filename: str
    content_type: str
    content: bytes
    created: str

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.content)


@dataclass
class Comment:
    """A stored comment."""

    id: int
    issue_key: str
    body: str
    created: str


@dataclass
class Issue:
    """A stored issue: the fields as created, plus workflow status, comments, attachments."""

    id: int
    key: str
    fields: dict[str, Any]
    created: str
    created_at: float
    status: str = "To Do"
    comments: list[Comment] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """The issue's labels."""
        return self.fields.get("labels") or []


class JiraDouble(HttpDouble):
    """Jira Cloud (`mode="cloud"`) or Server/Data Center (`mode="server"`) on loopback."""

    def __init__(
        self,
        mode: Literal["cloud", "server"] = "cloud",
        *,
        email: str = CLOUD_EMAIL,
        api_token: str = CLOUD_API_TOKEN,
        pat: str = SERVER_PAT,
        search_lag: float = 0.0,
    ) -> None:
        super().__init__()
        self.mode = mode
        self.email = email
        self.api_token = api_token
        self.pat = pat
        self.search_lag = search_lag
        self._issues: dict[str, Issue] = {}
        self._ids = itertools.count(10000)
        self._numbers: dict[str, itertools.count[int]] = {}
        self._routes = self._build_routes()

    @property
    def issues(self) -> dict[str, Issue]:
        """Stored issues by key."""
        with self._lock:
            return dict(self._issues)

    @property
    def attachments(self) -> list[Attachment]:
        """Every stored attachment, in upload order per issue."""
        with self._lock:
            return [a for issue in self._issues.values() for a in issue.attachments]

    @property
    def comments(self) -> list[Comment]:
        """Every stored comment, in order per issue."""
        with self._lock:
            return [c for issue in self._issues.values() for c in issue.comments]

    def routes(self) -> list[Route]:
        """The endpoints of this mode."""
        return self._routes

    def _build_routes(self) -> list[Route]:
        """Compile the route table once; the search path depends on the mode."""
        on_issue = f"{API}/issue/(?P<key>[^/]+)"
        table: list[tuple[str, str, Callable[..., Response]]] = [
            ("GET", f"{API}/serverInfo", self._server_info),
            ("GET", f"{API}/field", self._fields),
            ("POST", f"{API}/issue", self._create_issue),
            ("GET", on_issue, self._on_issue(self._get_issue)),
            ("POST", f"{on_issue}/attachments", self._on_issue(self._add_attachments)),
            ("POST", f"{on_issue}/comment", self._on_issue(self._add_comment)),
            ("GET", f"{on_issue}/comment", self._on_issue(self._list_comments)),
            ("GET", f"{on_issue}/transitions", self._on_issue(self._list_transitions)),
            ("POST", f"{on_issue}/transitions", self._on_issue(self._transition)),
            ("GET", r"/secure/attachment/(?P<id>\d+)/[^/]+", self._attachment_content),
        ]
        if self.mode == "cloud":
            table += [("GET", f"{API}/search/jql", self._search_cloud)]
            table += [("GET", f"{API}/search", lambda request: _error(410, _SEARCH_REMOVED))]
        else:
            table += [("GET", f"{API}/search", self._search_server)]
        return [(method, re.compile(path), handler) for method, path, handler in table]

    def authorize(self, request: Request, authorization: str | None) -> Response | None:
        """401 unless the request carries this mode's credentials."""
        if self.mode == "cloud":
            secret = f"{self.email}:{self.api_token}".encode()
            expected = "Basic " + base64.b64encode(secret).decode()
        else:
            expected = f"Bearer {self.pat}"
        if authorization == expected:
            return None
        return _error(
            401, "You are not authenticated. Authentication required to perform this operation."
        )

    def failure_response(self, status: int) -> Response:
        """Jira's error body with the status phrase."""
        return _error(status, HTTPStatus(status).phrase)

    def not_found(self, request: Request) -> Response:
        """What Jira's REST layer answers for a resource it does not have."""
        return json_response(
            404, {"message": f"null for uri: {self.url}{request.path}", "status-code": 404}
        )

    def _on_issue(self, handler: Callable[[Request, Issue], Response]) -> Callable[..., Response]:
        """Wrap `handler` to receive the issue named in the path; 404 for unknown ones."""

        def resolve(request: Request, key: str) -> Response:
            issue = self._issues.get(key) or next(
                (i for i in self._issues.values() if str(i.id) == key), None
            )
            if issue is None:
                return _error(404, "Issue does not exist or you do not have permission to see it.")
            return handler(request, issue)

        return resolve

    def _server_info(self, request: Request) -> Response:
        """Version and deployment type; the client needs `versionNumbers`."""
        version = [1001, 0, 0] if self.mode == "cloud" else [9, 12, 15]
        return json_response(
            200,
            {
                "baseUrl": self.url,
                "version": ".".join(map(str, version)),
                "versionNumbers": version,
                "deploymentType": "Cloud" if self.mode == "cloud" else "Server",
                "buildNumber": 100000,
                "buildDate": "2025-01-01T00:00:00.000+0000",
                "serverTime": _now(),
                "scmInfo": "0000000000000000000000000000000000000000",
                "serverTitle": "Jira",
            },
        )

    def _fields(self, request: Request) -> Response:
        """A few system fields, with the clause names the client maps to field ids."""
        return json_response(
            200,
            [
                {
                    "id": field_id,
                    "key": field_id,
                    "name": name,
                    "custom": False,
                    "orderable": True,
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": [field_id],
                    "schema": {"type": kind, "system": field_id},
                }
                for field_id, name, kind in _FIELDS
            ],
        )

    def _create_issue(self, request: Request) -> Response:
        """Validate the required fields as Jira does, store the issue, answer 201."""
        body = request.json if isinstance(request.json, dict) else {}
        fields = body.get("fields") if isinstance(body.get("fields"), dict) else {}
        errors = _field_errors(fields)
        if errors:
            return _error(400, errors=errors)
        project = fields["project"]["key"]
        number = next(self._numbers.setdefault(project, itertools.count(1)))
        issue = Issue(
            id=next(self._ids),
            key=f"{project}-{number}",
            fields=fields,
            created=_now(),
            created_at=time.monotonic(),
        )
        self._issues[issue.key] = issue
        return json_response(
            201, {"id": str(issue.id), "key": issue.key, "self": self._issue_url(issue)}
        )

    def _get_issue(self, request: Request, issue: Issue) -> Response:
        """The stored issue with status, comments and attachment metadata."""
        return json_response(200, self._issue_json(issue))

    def _add_attachments(self, request: Request, issue: Issue) -> Response:
        """Store each multipart `file` part; Jira refuses uploads without the XSRF opt-out."""
        if request.headers.get("x-atlassian-token", "").lower() != "no-check":
            return Response(403, b"XSRF check failed", content_type="text/plain")
        stored = []
        for part in _multipart_parts(request):
            if part.get_param("name", header="content-disposition") != "file":
                continue
            attachment = Attachment(
                id=next(self._ids),
                issue_key=issue.key,
                filename=part.get_filename() or "",
                content_type=part.get_content_type(),
                content=part.get_payload(decode=True) or b"",
                created=_now(),
            )
            issue.attachments.append(attachment)
            stored.append(self._attachment_json(attachment))
        if not stored:
            return _error(400, "No file was attached in the multipart field 'file'.")
        return json_response(200, stored)

    def _attachment_content(self, request: Request, id: str) -> Response:
        """The bytes of an attachment, at the URL its `content` field names."""
        for attachment in self.attachments:
            if attachment.id == int(id):
                return Response(200, attachment.content, content_type=attachment.content_type)
        return self.not_found(request)

    def _add_comment(self, request: Request, issue: Issue) -> Response:
        """Store a comment; its body is required."""
        body = request.json if isinstance(request.json, dict) else {}
        if not isinstance(body.get("body"), str) or not body["body"].strip():
            return _error(400, errors={"comment": "Comment body can not be empty!"})
        comment = self._comment(issue, body["body"])
        return json_response(201, self._comment_json(issue, comment))

    def _list_comments(self, request: Request, issue: Issue) -> Response:
        """All comments of the issue in one page."""
        return json_response(200, self._comment_page(issue))

    def _list_transitions(self, request: Request, issue: Issue) -> Response:
        """Transitions to every status but the current one."""
        return json_response(
            200,
            {
                "expand": "transitions",
                "transitions": [
                    {"id": transition_id, "name": name, "to": self._status_json(name)}
                    for transition_id, name in _TRANSITIONS.items()
                    if name != issue.status
                ],
            },
        )

    def _transition(self, request: Request, issue: Issue) -> Response:
        """Move the issue to the transition's status, adding a comment sent along; 204."""
        body = request.json if isinstance(request.json, dict) else {}
        transition_id = str((body.get("transition") or {}).get("id"))
        target = _TRANSITIONS.get(transition_id)
        if target is None or target == issue.status:
            return _error(400, f"Transition id '{transition_id}' is not valid for this issue.")
        issue.status = target
        for change in (body.get("update") or {}).get("comment", []):
            self._comment(issue, change["add"]["body"])
        return Response(204)

    def _search_server(self, request: Request) -> Response:
        """Server/DC search: one startAt/maxResults page and the total."""
        found = self._search(request.param("jql", ""))
        if isinstance(found, Response):
            return found
        start = int(request.param("startAt", "0"))
        size = int(request.param("maxResults", "50"))
        page = found[start : start + size]
        return json_response(
            200,
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": size,
                "total": len(found),
                "issues": [self._issue_json(issue) for issue in page],
            },
        )

    def _search_cloud(self, request: Request) -> Response:
        """Cloud search: a page and a nextPageToken while more are left; no total."""
        jql = request.param("jql", "")
        if not jql.strip():
            return _error(
                400,
                "Unbounded JQL queries are not allowed here. "
                "Please add a search restriction to your query.",
            )
        found = self._search(jql)
        if isinstance(found, Response):
            return found
        start = int(request.param("nextPageToken", "0"))
        size = int(request.param("maxResults", "50"))
        document: dict[str, Any] = {
            "issues": [self._issue_json(issue) for issue in found[start : start + size]],
            "isLast": start + size >= len(found),
        }
        if not document["isLast"]:
            document["nextPageToken"] = str(start + size)
        return json_response(200, document)

    def _search(self, jql: str) -> list[Issue] | Response:
        """Indexed issues matching `jql`, oldest first, or a 400 for JQL the double lacks."""
        try:
            clauses = parse_jql(jql)
        except ValueError as error:
            return _error(400, f"Error in the JQL Query: {error}")
        indexed_before = time.monotonic() - self.search_lag
        return [
            issue
            for issue in self._issues.values()
            if issue.created_at <= indexed_before and _matches(issue, clauses)
        ]

    def _comment(self, issue: Issue, body: str) -> Comment:
        """Append a comment to `issue`."""
        comment = Comment(id=next(self._ids), issue_key=issue.key, body=body, created=_now())
        issue.comments.append(comment)
        return comment

    def _issue_url(self, issue: Issue) -> str:
        """The issue's `self` link."""
        return f"{self.url}{API}/issue/{issue.id}"

    def _issue_json(self, issue: Issue) -> dict[str, Any]:
        """The issue as GET issue returns it."""
        return {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog",
            "id": str(issue.id),
            "self": self._issue_url(issue),
            "key": issue.key,
            "fields": {
                "labels": [],
                "description": None,
                **issue.fields,
                "status": self._status_json(issue.status),
                "created": issue.created,
                "updated": issue.created,
                "attachment": [self._attachment_json(a) for a in issue.attachments],
                "comment": self._comment_page(issue),
            },
        }

    def _status_json(self, name: str) -> dict[str, Any]:
        """A workflow status with its category."""
        status_id, category_key, category_id, category_name = _STATUSES[name]
        return {
            "self": f"{self.url}{API}/status/{status_id}",
            "id": status_id,
            "name": name,
            "statusCategory": {"id": category_id, "key": category_key, "name": category_name},
        }

    def _attachment_json(self, attachment: Attachment) -> dict[str, Any]:
        """Attachment metadata, with the URL of its content."""
        return {
            "self": f"{self.url}{API}/attachment/{attachment.id}",
            "id": str(attachment.id),
            "filename": attachment.filename,
            "created": attachment.created,
            "size": attachment.size,
            "mimeType": attachment.content_type,
            "content": f"{self.url}/secure/attachment/{attachment.id}/{quote(attachment.filename)}",
        }

    def _comment_json(self, issue: Issue, comment: Comment) -> dict[str, Any]:
        """One comment."""
        return {
            "self": f"{self._issue_url(issue)}/comment/{comment.id}",
            "id": str(comment.id),
            "body": comment.body,
            "created": comment.created,
            "updated": comment.created,
        }

    def _comment_page(self, issue: Issue) -> dict[str, Any]:
        """All comments of `issue` as one page."""
        return {
            "startAt": 0,
            "maxResults": len(issue.comments),
            "total": len(issue.comments),
            "comments": [self._comment_json(issue, c) for c in issue.comments],
        }


_VALUE = r"\"[^\"]*\"|'[^']*'|[^\s,()\"']+"
_CLAUSE = re.compile(
    rf"\s*(?P<field>\w+)\s*(?:=\s*(?P<value>{_VALUE})|in\s*\((?P<values>[^)]*)\))"
    r"\s*(?:and\s+(?=\S)|$)",
    re.IGNORECASE,
)
_SEARCHABLE = {"labels", "project", "status", "key"}


def parse_jql(jql: str) -> list[tuple[str, set[str]]]:
    """(field, accepted values) per AND-ed clause; ValueError for anything else."""
    clauses = []
    position, jql = 0, jql.strip()
    while position < len(jql):
        match = _CLAUSE.match(jql, position)
        if match is None:
            raise ValueError(f"the test double cannot parse {jql[position:]!r}")
        name = match["field"].lower()
        if name not in _SEARCHABLE:
            raise ValueError(f"the test double cannot search by {match['field']!r}")
        raw = (
            [match["value"]] if match["value"] is not None else re.findall(_VALUE, match["values"])
        )
        clauses.append((name, {_fold(name, value.strip("\"'")) for value in raw}))
        position = match.end()
    return clauses


def _matches(issue: Issue, clauses: list[tuple[str, set[str]]]) -> bool:
    """Whether `issue` satisfies every clause."""
    values = {
        "labels": set(issue.labels),
        "project": {issue.fields["project"]["key"]},
        "status": {issue.status},
        "key": {issue.key},
    }
    return all({_fold(name, v) for v in values[name]} & wanted for name, wanted in clauses)


def _fold(name: str, value: str) -> str:
    """Labels compare exactly; project keys, statuses and issue keys ignore case."""
    return value if name == "labels" else value.lower()


def _field_errors(fields: dict[str, Any]) -> dict[str, str]:
    """Jira's per-field messages for a create request that lacks what it requires."""
    errors = {}
    if not _member(fields.get("project"), "key"):
        errors["project"] = "project is required"
    if not _member(fields.get("issuetype"), "name"):
        errors["issuetype"] = "issue type is required"
    summary = fields.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors["summary"] = "You must specify a summary of the issue."
    elif len(summary) > 255:
        errors["summary"] = "Summary must be less than 255 characters."
    spaced = [label for label in fields.get("labels") or [] if " " in str(label)]
    if spaced:
        errors["labels"] = f"The label '{spaced[0]}' contains spaces which is invalid."
    return errors


def _member(value: Any, name: str) -> Any:
    """value[name] when value is an object, else None."""
    return value.get(name) if isinstance(value, dict) else None


def _multipart_parts(request: Request) -> list[Any]:
    """The parts of a multipart/form-data body (the email parser keeps bytes exact)."""
    head = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    return list(message.iter_parts()) if message.is_multipart() else []


def _error(status: int, *messages: str, errors: dict[str, str] | None = None) -> Response:
    """Jira's error document."""
    return json_response(status, {"errorMessages": list(messages), "errors": errors or {}})


def _now() -> str:
    """The current time as Jira formats it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
