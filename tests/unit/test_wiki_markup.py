"""Untrusted values in the Jira ticket render as text, never as wiki markup.

`live_markup` is a small checker of Jira's notation: it lists the markup tokens a text
holds that Jira would act on (skipping backslash escapes and entities, and reading a
`[text|http(s)://...]` link as one token). A hostile value put into any field of a real
ticket (built by workers.ticket from real records) must leave exactly the tokens the same
ticket has with a harmless value there: the template's own markup, nothing more.
"""

import html
import re
from datetime import UTC, datetime, timedelta

import pytest

from core import markup, urls
from core.records import (
    Decision,
    DecisionStep,
    OwnerRecord,
    Quarantine,
    Rollback,
    RollbackStep,
    Rollout,
    WorkloadRecord,
)
from workers import ticket

SPECIAL = set("-#*_+?^~|%{}[]()!@")
ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);")
# A link whose URL is http(s) and holds no character markup would read.
LINK = re.compile(r"\[((?:\\.|[^\\\[\]|])*)\|(https?://[^\s\[\]|{}!*^~\\()<>\"']+)\]")
BLOCK = re.compile(r"^\s*(h[1-6]|bq)\.")


def live_markup(text: str) -> list[str]:
    """The wiki-markup tokens Jira would act on in `text`, in order."""
    tokens = []
    for line in text.split("\n"):
        block = BLOCK.match(line)
        if block:
            tokens.append(block.group(1) + ".")
        tokens += _inline(line)
    return tokens


def _inline(line: str) -> list[str]:
    tokens, index = [], 0
    while index < len(line):
        char, rest = line[index], line[index + 1 : index + 2]
        if char == "\\":
            if rest == "\\":
                tokens.append("\\\\")  # a line break
            index += 2 if rest and (rest in SPECIAL or rest == "\\") else 1
            continue
        entity = ENTITY.match(line, index) if char == "&" else None
        if entity:
            # Text, unless it stands for an invisible character (`&rlm;`, `&#x202E;`).
            if any(map(markup.is_invisible, html.unescape(entity.group()))):
                tokens.append(entity.group())
            index = entity.end()
            continue
        found = LINK.match(line, index) if char == "[" else None
        if found:
            tokens += ["link(", *_inline(found.group(1)), ")"]
            index = found.end()
            continue
        if char in SPECIAL:
            tokens.append(char)
        index += 1
    return tokens


HOSTILE = [
    "[click here|http://evil.example/login]",
    "!http://evil.example/pixel.png!",
    "{html}<script>alert(1)</script>{html}",
    "{noformat}",
    "{code}x{code}",
    "x}} breakout {{y",
    "a|b||c",
    "*bold* _it_ +ins+ -del- ^sup^ ~sub~ ??cite??",
    "h1. Heading",
    "line\nh1. Heading on its own line",
    "bq. quoted",
    "----",
    "--- and --",
    "a\\\\b",
    "\\[x|http://evil.example]",
    "trailing backslash \\",
    "{color:red}alarm{color}",
    "[~admin] [^secret.txt] [#anchor] {anchor:x}",
    "# one\n# two\n* three",
    "(!) (x) (/) (i) :) ;)",
    "@here 100%",
    "&#x202E;evil &rlm;",
    "{panel}x{panel}",
    "line\r\nbreak\ttab",
]
# Harmless alone, hostile where they land: a trailing backslash escapes the template's next
# `|` (a table cell joins the next), a line break starts a line (for `h1.`, lists).
CONTEXTUAL = ("trailing backslash \\", "line\r\nbreak\ttab")
PLAIN = "harmless"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def records(
    value: str = PLAIN, field: str = "", url: str = "https://ci.example/run/1"
) -> tuple[Rollback, Decision]:
    """A rollback and its decision, with `value` in `field` (and `url` as the pipeline)."""

    def put(name: str, default: str = PLAIN) -> str:
        return value if field == name else default

    workload = WorkloadRecord(
        cluster="default", namespace=put("namespace", "shop"), kind="Deployment", name="checkout"
    )
    rollout = Rollout(
        workload=workload,
        revision="2",
        previous_revision="1",
        images=[put("image", "registry/checkout:2")],
        change_cause=put("change_cause"),
        started_at=NOW - timedelta(minutes=5),
        version=put("version", "v2"),
        commit=put("commit", "abc1234"),
        previous_commit=put("previous_commit", "abc1230"),
        repository=put("repository", "https://github.com/shop/checkout"),
        author=put("author"),
        url=url,
        sources=["ci"],
    )
    decision = Decision(
        id="d1",
        episode_id="e1",
        alertname=put("alertname", "CheckoutHigh5xx"),
        labels={"namespace": "shop", put("label_name", "team"): put("label_value")},
        starts_at=NOW - timedelta(minutes=2),
        workload=workload,
        rollout=rollout,
        outcome="rollback",
        reason="enqueued",
        detail=put("detail"),
        policy={"mode": "enforce", "lookback": put("policy", "30m")},
        history=[DecisionStep(at=NOW, outcome="rollback", reason="enqueued")],
    )
    step = RollbackStep(
        name="patch",
        status="ok",
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=1),
        detail=put("step_detail"),
    )
    rollback = Rollback(
        id="r1",
        decision_id="d1",
        workload=workload,
        bad_revision="2",
        target_revision="1",
        status="verified",
        reason=put("reason", "held"),
        steps=[step],
        preflight={"paused": {"ok": True, "detail": put("preflight")}},
        verification={"mode": "queries", "detail": put("verification")},
        owner=OwnerRecord(
            kind="argocd", namespace="argocd", name=put("owner", "shop"), found_by=put("found_by")
        ),
        finished_at=NOW + timedelta(seconds=30),
        judgment={
            "verdict": "confirmed",
            "mode": "require",
            "confidence": 0.98,
            "detail": put("judgment_detail"),
            "kpis": [
                {
                    "name": put("kpi_name", "5xx ratio"),
                    "how": "side_by_side",
                    "n_new": 20,
                    "n_old": 40,
                    "median_new": 0.05,
                    "median_old": 0.001,
                    "p_value": 1e-9,
                    "shift": 0.049,
                    "allowed": 0.0001,
                    "verdict": "confirmed",
                    "reason": put("kpi_reason"),
                }
            ],
        },
    )
    return rollback, decision


def extras(value: str = PLAIN, field: str = "") -> dict:
    """The evidence's diff and the quarantine, with `value` in `field`."""

    def put(name: str, default: str = PLAIN) -> str:
        return value if field == name else default

    change = {"where": put("change_where"), "field": put("change_field"), "before": "a"}
    quarantine = Quarantine(
        id="r1",
        workload=WorkloadRecord(
            cluster="default", namespace="shop", kind="Deployment", name="checkout"
        ),
        revision="2",
        images=[put("quarantined_image", "registry/checkout:2")],
        rollback_id="r1",
        decision_id="d1",
        quarantined_at=NOW,
        expires_at=NOW + timedelta(days=14),
    )
    evidence = {"changes": {"changes": [{**change, "after": put("change_after")}], "more": 0}}
    return {"evidence": evidence, "quarantine": quarantine}


def describe(
    rollback: Rollback, decision: Decision, *, links=None, snapshot=PLAIN, value=PLAIN, field=""
) -> str:
    return ticket.description(
        rollback,
        decision,
        links=links or {"Backstop rollback": "https://backstop.example/api/v1/rollbacks/r1"},
        snapshots=[{"name": snapshot, "expr": snapshot, "file": "snapshot-1"}],
        **extras(value, field),
    )


FIELDS = [
    "namespace",
    "image",
    "change_cause",
    "version",
    "commit",
    "author",
    "alertname",
    "label_name",
    "label_value",
    "detail",
    "policy",
    "step_detail",
    "reason",
    "preflight",
    "verification",
    "owner",
    "found_by",
    "previous_commit",
    "repository",
    "judgment_detail",
    "kpi_name",
    "kpi_reason",
    "change_where",
    "change_field",
    "change_after",
    "quarantined_image",
]


def test_the_checker_sees_each_hostile_value_as_markup():
    """Otherwise the table below could not fail."""
    for value in HOSTILE:
        if value not in CONTEXTUAL:
            assert live_markup(value), value
    assert live_markup("[x|http://evil.example]") == ["link(", ")"]
    assert live_markup("[x|javascript:alert(1)]") == ["[", "|", "(", ")", "]"]
    assert live_markup("plain text, escaped \\[x\\] &#92; &amp;") == []


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_in_any_field_adds_no_markup(field, value):
    expected = live_markup(describe(*records(field=field), field=field))
    text = describe(*records(value, field), value=value, field=field)
    assert live_markup(text) == expected


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_snapshot_names_and_expressions_add_no_markup(value):
    expected = live_markup(describe(*records()))
    assert live_markup(describe(*records(), snapshot=value)) == expected


BAD_URLS = [
    "javascript:alert(1)",
    "JAVASCRIPT:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "//evil.example/x",
    "http:evil.example",
    "http://",
    " https://evil.example/",
    "https://evil.example/\u202e/gpj.exe",
    "java\tscript:alert(1)",
]
MARKUP_URLS = [
    "http://evil.example/a]|[b",
    "https://grafana.example/d/x?var={html}!img!&p=*b*",
    "https://x.example/(!)~^\\",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_only_http_urls_become_links(url):
    rollback, decision = records(url=url)
    text = describe(rollback, decision, links={"Alert source": url})
    # The same ticket with a harmless URL that is not http(s): no link either.
    expected = describe(*records(url="not-a-url"), links={"Alert source": "not-a-url"})
    assert live_markup(text) == live_markup(expected)
    # Only the repository's and the commits' compare links, which are known good.
    assert live_markup(text).count("link(") == 2


@pytest.mark.parametrize("url", MARKUP_URLS)
def test_an_http_url_holding_markup_is_percent_encoded_in_its_link(url):
    rollback, decision = records(url=url)
    text = describe(rollback, decision, links={"Alert source": url})
    expected = describe(
        *records(url="https://ci.example/run/1"),
        links={"Alert source": "https://ci.example/run/1"},
    )
    assert live_markup(text) == live_markup(expected)
    # The pipeline and the alert source, beside the repository and the commits compared.
    assert live_markup(text).count("link(") == 4


def test_the_summary_is_one_plain_line_with_invisible_characters_shown():
    rollback, decision = records("check\u200bout\nh1. x", "alertname")
    summary = ticket.summary(rollback, decision)
    assert "\n" not in summary and "check<U+200B>out" in summary
    assert "check<U\\+200B>out" in describe(rollback, decision)


def test_invisible_characters_are_shown_in_the_ticket():
    rollback, decision = records("shop\u202e\u2066x\ufeff\u00ad", "namespace")
    text = describe(rollback, decision)
    for code in ("202E", "2066", "FEFF", "00AD"):
        assert f"<U\\+{code}>" in text
    assert not any(markup.is_invisible(char) for char in text if char != "\n")


def test_http_url_accepts_only_absolute_http_urls_with_a_host():
    assert urls.http_url("https://ci.example/run/1?x=1#y") == "https://ci.example/run/1?x=1#y"
    assert urls.http_url("HTTP://Grafana:3000/d/abc") == "HTTP://Grafana:3000/d/abc"
    for url in [*BAD_URLS, "", None, 42, "https://[::1", "https://" + "a" * 2050]:
        assert urls.http_url(url) is None, url
    assert urls.https_url("http://backstop.example/x.png") is None


def test_the_ticket_shows_the_judgment_what_changed_the_quarantine_and_the_compare_link():
    text = describe(*records())
    assert "h3. What changed" in text and "h3. Judgment" in text
    assert "||KPI||how||points new/old||" in text and "|5xx ratio|side\\_by\\_side|20/40|" in text
    assert "*Quarantined:* registry/checkout:2 until" in text
    assert "[abc1234|https://github.com/shop/checkout/compare/abc1230...abc1234]" in text
    rollback, decision = records()
    rollback.judgment = {}
    plain_ticket = ticket.description(rollback, decision, links={}, snapshots=[])
    assert "h3. Judgment" not in plain_ticket and "h3. What changed" not in plain_ticket


def test_only_a_revert_that_happened_is_claimed():
    rollback, decision = records()
    rollback.status, rollback.reason = "blocked", "not_caused_by_rollout"
    text = ticket.description(rollback, decision, links={}, snapshots=[])
    assert "Nothing was reverted" in text and "Backstop reverted" not in text
    rollback.status = "verified"
    rollback.steps.append(
        RollbackStep(
            name="revert", status="ok", started_at=NOW, finished_at=NOW + timedelta(seconds=1)
        )
    )
    text = ticket.description(rollback, decision, links={}, snapshots=[])
    assert "Backstop reverted the workload to save the service" in text
