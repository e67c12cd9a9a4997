"""Chat messages built from real records carry hostile values as text: Slack mrkdwn never
holds a mention, a channel ping or a link Backstop did not make, Teams Markdown never a
link, emphasis or HTML, and every message is one Slack and Teams would take (checked with
the doubles' own validators)."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from core.records import (
    Decision,
    DecisionStep,
    OwnerRecord,
    Quarantine,
    Rollback,
    Rollout,
    WorkloadRecord,
)
from testbed.doubles.slack import block_errors
from testbed.doubles.teams import card_errors, message_errors
from workers.chatcards import (
    FIELD_MAX,
    HEADER_MAX,
    SECTION_MAX,
    slack_escape,
    slack_link,
    slack_message,
    teams_card,
    teams_markdown,
)
from workers.chatnotes import Links, approval_note, denial_note, release_note, rollback_note

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
HOSTILE = (
    "<!channel> <!here> <@U123ABC> <#C999|general> <https://evil.example|click me> "
    "[click](https://evil.example) **bold** _it_ ~x~ `code` & &amp; &lt; \u202egnp.exe\u200b "
    ":rotating_light: {{DATE(2026-01-01T00:00:00Z)}}"
)
LINKS = Links(
    public_url="https://backstop.example",
    jira_url="https://jira.example",
    alert_url="https://prom.example/graph?g0.expr=a|b>c<d&x=1",
)
# A Slack link Backstop makes: <http(s)://...|label>, the URL without | < > or spaces.
SLACK_LINK = re.compile(r"<(https?://[^\s|<>]+)\|([^<>|]*)>")
EVENTS = ["started", "verified", "verification_failed", "blocked", "failed"]


def records(value: str = HOSTILE):
    """A rollback, its decision and quarantine, with `value` in every outside field."""
    workload = WorkloadRecord(
        cluster="default", namespace="shop", kind="Deployment", name="checkout"
    )
    rollout = Rollout(
        workload=workload,
        revision="2",
        images=[f"shop/checkout:2 {value}", *(f"img:{i}" for i in range(8))],
        started_at=NOW - timedelta(minutes=5),
        pipeline_url=f"javascript:alert(1)//{value}",
        repository="https://github.com/shop/checkout",
        previous_commit="a" * 40,
        commit="b" * 40,
    )
    decision = Decision(
        id="d-1",
        episode_id="d-1",
        alertname=value,
        labels={"alertname": value, "namespace": "shop"},
        starts_at=NOW,
        workload=workload,
        rollout=rollout,
        outcome="awaiting_approval",
        reason="approval_required",
        detail=f"waiting for a human to approve rolling back {value}",
    )
    rollback = Rollback(
        id="rollback-abc-2",
        decision_id="d-1",
        workload=workload,
        bad_revision="2",
        target_revision="1",
        status="blocked",
        reason=value,
        owner=OwnerRecord(kind="argocd", namespace="argocd", name=value, found_by="label"),
        verification={"detail": value},
    )
    quarantine = Quarantine(
        id="rollback-abc-2",
        workload=workload,
        revision="2",
        images=[value],
        rollback_id="rollback-abc-2",
        decision_id="d-1",
        expires_at=NOW + timedelta(days=14),
        end="released",
        ended_by=value,
        end_reason=value,
        ended_at=NOW,
    )
    return rollback, decision, quarantine


def every_note(value: str = HOSTILE):
    rollback, decision, quarantine = records(value)
    active = quarantine.model_copy(update={"end": None})
    for event in EVENTS:
        yield rollback_note(
            event, rollback, decision, links=LINKS, quarantine=active, jira_key=f"OPS-1{value}"
        )
    yield approval_note(decision, links=LINKS)
    yield denial_note(denied(decision, value), links=LINKS)
    yield release_note(quarantine, links=LINKS)


def denied(decision: Decision, value: str) -> Decision:
    """`decision` denied by a human named `value` who gave `value` as the reason."""
    step = DecisionStep(at=NOW, outcome="skipped", reason="denied", by=value, note=value)
    return decision.model_copy(
        update={"outcome": "skipped", "reason": "denied", "history": [*decision.history, step]}
    )


def mrkdwn_texts(text: str, blocks: list[dict]) -> list[str]:
    """Every text Slack reads as mrkdwn: the notification text and mrkdwn objects."""
    found = [text]

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


@pytest.mark.parametrize("note", list(every_note()), ids=lambda n: n.event)
def test_slack_mrkdwn_holds_no_markup_from_outside(note):
    text, blocks = slack_message(note)
    assert block_errors(blocks) == []
    for mrkdwn in mrkdwn_texts(text, blocks):
        # The only angle brackets left are Backstop's own links, to http(s) URLs.
        rest = SLACK_LINK.sub("", mrkdwn)
        assert "<" not in rest and ">" not in rest, mrkdwn
        for url, label in SLACK_LINK.findall(mrkdwn):
            assert url.startswith(
                (
                    "https://backstop.example/",
                    "https://jira.example/",
                    "https://prom.example/",
                    "https://github.com/",
                )
            )
            assert "<" not in label and ">" not in label
    assert "javascript" not in json.dumps(mrkdwn_texts(text, blocks))
    # mrkdwn objects are verbatim: no auto-linking of names, channels or URLs.
    assert all(
        o.get("verbatim") is True
        for b in blocks
        for o in [b.get("text") or {}]
        if o.get("type") == "mrkdwn"
    )


@pytest.mark.parametrize("note", list(every_note()), ids=lambda n: n.event)
def test_slack_outside_text_sits_in_plain_text_objects(note):
    _, blocks = slack_message(note)
    header = blocks[0]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    fields = [f for b in blocks for f in b.get("fields", [])]
    assert fields and all(f["type"] == "plain_text" for f in fields)
    assert all(len(f["text"]) <= FIELD_MAX for f in fields)
    shown = json.dumps(blocks, ensure_ascii=False)
    # Invisible characters are shown, never sent as they are.
    assert "\u202e" not in shown and "\u200b" not in shown
    assert "<U+202E>" in shown or note.event in ("started", "verified") or "<U+200B>" in shown


def test_slack_fallback_text_is_escaped():
    rollback, decision, _ = records()
    note = rollback_note("blocked", rollback, decision, links=LINKS)
    text, _ = slack_message(note)
    assert "&lt;!channel&gt;" in text and "&lt;@U123ABC&gt;" in text
    assert "&amp;amp;" in text  # an entity from outside stays text


def test_slack_links_only_http_with_separators_encoded():
    assert slack_link("x", "javascript:alert(1)") is None
    assert slack_link("x", "data:text/html,hi") is None
    assert slack_link("a<b>|c", "https://e.example/p?q=a|b>c<d&e") == (
        "<https://e.example/p?q=a%7Cb%3Ec%3Cd&amp;e|a&lt;b&gt;|c>"
    )
    assert slack_escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"


@pytest.mark.parametrize("note", list(every_note()), ids=lambda n: n.event)
def test_teams_card_is_valid_and_its_markdown_inert(note):
    card = teams_card(note)
    message = {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }
    assert message_errors(message) == [] and card_errors(card) == []
    assert len(json.dumps(message).encode()) < 28 * 1024
    facts = [
        f for element in card["body"] if element["type"] == "FactSet" for f in element["facts"]
    ]
    assert facts
    for fact in facts:
        for text in (fact["title"], fact["value"]):
            assert not _live_markdown(text), text
    # Outside text elsewhere is in TextRuns, which Teams never reads as Markdown.
    for element in card["body"]:
        assert element["type"] in ("RichTextBlock", "FactSet")
    for action in card.get("actions", []):
        assert action["url"].startswith("https://") and "javascript" not in action["url"]


def _live_markdown(text: str) -> list[str]:
    """Markdown syntax a CommonMark reader would act on (skipping backslash escapes)."""
    live, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char in "[]*_~`<>&":
            live.append(char)
        index += 1
    return live


def test_teams_markdown_escapes_links_emphasis_html_and_line_starts():
    assert teams_markdown("[x](https://evil)") == r"\[x\]\(https://evil\)"
    assert teams_markdown("**b** _i_ <https://e>") == r"\*\*b\*\* \_i\_ \<https://e\>"
    assert teams_markdown("- item") == r"\- item"
    assert teams_markdown("1. one") == r"1\. one" and teams_markdown("2) two") == r"2\) two"
    assert teams_markdown("# title") == r"\# title"
    assert teams_markdown("a\nb\u200b") == r"a b\<U+200B\>"


def test_long_values_are_cut_to_each_platform_limits():
    note = next(every_note("x" * 20_000))
    text, blocks = slack_message(note)
    assert block_errors(blocks) == []
    assert len(blocks[0]["text"]["text"]) <= HEADER_MAX
    assert len(blocks[1]["text"]["text"]) <= SECTION_MAX and len(text) <= SECTION_MAX
    card = teams_card(note)
    assert card_errors(card) == [] and len(json.dumps(card)) < 28 * 1024


def test_what_each_message_says():
    rollback, decision, quarantine = records("CheckoutHigh5xx")
    started = rollback_note("started", rollback, decision, links=LINKS)
    assert started.title == "Rolling back shop/checkout"
    assert "reverted revision 2 to 1 after the alert CheckoutHigh5xx;" in started.summary
    assert ("Revisions", "2 → 1") in started.facts
    verified = rollback_note(
        "verified",
        rollback,
        decision,
        links=LINKS,
        quarantine=quarantine.model_copy(update={"end": None}),
        jira_key="OPS-7",
    )
    assert verified.tone == "good" and ("Jira", "OPS-7") in verified.facts
    assert ("Jira OPS-7", "https://jira.example/browse/OPS-7") in verified.links
    assert ("Rollback", "https://backstop.example/rollbacks/rollback-abc-2") in verified.links
    assert any(label == "Commits compared" for label, _ in verified.links)
    assert all(label != "Pipeline run" for label, _ in verified.links)  # javascript: dropped
    approval = approval_note(decision, links=LINKS)
    assert ("Approve or deny", "https://backstop.example/approvals") in approval.links
    no = denial_note(denied(decision, "alice"), links=LINKS)
    assert no.title == "Rollback of shop/checkout denied" and no.tone == "accent"
    assert no.summary == "alice denied rolling back revision 2; nothing was changed."
    assert ("Denied by", "alice") in no.facts and ("Why", "alice") in no.facts
    assert ("Decision", "https://backstop.example/decisions/d-1") in no.links
    assert all(label != "Approve or deny" for label, _ in no.links)
    released = release_note(quarantine, links=LINKS)
    assert "released by a human" in released.summary
    assert ("Ended by", "CheckoutHigh5xx") in released.facts
    # Without a public URL, no link to Backstop (a relative one would lead nowhere).
    bare = approval_note(decision, links=Links())
    assert all("backstop" not in url for _, url in bare.links)
