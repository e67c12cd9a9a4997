"""How a chat message (workers/chatnotes.py) looks: Slack Block Kit, or a Microsoft Teams
Adaptive Card, with every value escaped for where it goes.

Every value is first made one line, its invisible characters shown (`<U+200B>`,
core/markup.py), then cut to the platform's limits.

- Slack: the title, the sentence and the facts are `plain_text` objects, which Slack never
  reads as markup. The links are the one `mrkdwn` text (`verbatim`, so nothing is
  auto-linked): its labels have `&`, `<` and `>` escaped, so `<!channel>`, `<@U123>` and
  `<url|text>` stay text, and each URL is an http(s) URL with `|`, `<`, `>` percent-encoded.
  The notification text (`text`) is mrkdwn, escaped the same way.
- Teams: title, sentence and footer are `TextRun`s, which Teams never reads as Markdown;
  fact titles and values, which it does, have Markdown's link, emphasis, code, list and
  HTML characters backslash-escaped, so `[x](https://evil)`, `**` or `<https://evil>` stay
  text. Buttons (`Action.OpenUrl`) carry http(s) URLs only, their titles plain text.
"""

import re

from core import markup, urls
from workers.chatnotes import Note

# Block Kit's limits (docs.slack.dev, Block Kit reference).
HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
LINKS_MAX = 8
# Adaptive Cards: Teams renders 1.4 in chats and channels from Workflows.
CARD_VERSION = "1.4"
SUMMARY_MAX = 1500
FACT_MAX = 500
ACTIONS_MAX = 6
ACTION_TITLE_MAX = 60
TEAMS_COLORS = {"good": "Good", "warning": "Warning", "attention": "Attention", "accent": "Accent"}

_SLACK = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_SLACK_URL = {"|": "%7C", "<": "%3C", ">": "%3E", "&": "&amp;"}
# Markdown's inline syntax as Teams reads it (CommonMark subset): links and images, emphasis,
# code, autolinks and HTML, entities, escapes.
_TEAMS_INLINE = re.compile(r"[\\`*_~\[\]()<>&!|{}]")
# ...and what only counts at the start of a line: headings, quotes, lists.
_TEAMS_START = re.compile(r"^(\s*(?:\d+)?)([#>+.)-])")


def plain(value: object, limit: int) -> str:
    """One line, invisible characters shown, at most `limit` characters."""
    return _cut(markup.plain(value).strip(), limit)


def slack_escape(value: object) -> str:
    """Text for Slack mrkdwn that shows as itself: `&`, `<` and `>` as entities."""
    return "".join(_SLACK.get(char, char) for char in markup.plain(value))


def slack_link(label: str, url: str) -> str | None:
    """`<url|label>` for an http(s) URL, else None."""
    target = urls.http_url(url)
    if target is None:
        return None
    href = "".join(_SLACK_URL.get(char, char) for char in target)
    return f"<{href}|{slack_escape(plain(label, 80))}>"


def teams_markdown(value: object) -> str:
    """Text for a Teams Markdown field (a fact's title or value) that shows as itself."""
    text = _TEAMS_INLINE.sub(lambda found: "\\" + found.group(), markup.plain(value))
    return _TEAMS_START.sub(lambda found: f"{found[1]}\\{found[2]}", text, count=1)


def slack_message(note: Note) -> tuple[str, list[dict]]:
    """(the notification's text, the Block Kit blocks) of a note."""
    blocks: list[dict] = [
        {"type": "header", "text": _plain_text(note.title, HEADER_MAX)},
        {"type": "section", "text": _plain_text(note.summary, SECTION_MAX)},
    ]
    fields = [
        # Our label on its own line; the value made one line (plain) under it.
        {
            "type": "plain_text",
            "text": f"{label}\n{plain(value, FIELD_MAX - len(label) - 1)}",
            "emoji": False,
        }
        for label, value in note.facts[:FIELDS_MAX]
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    links = _slack_links(note.links)
    if links:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": links, "verbatim": True}}
        )
    if note.footer:
        blocks.append({"type": "context", "elements": [_plain_text(note.footer, SECTION_MAX)]})
    text = _cut(slack_escape(plain(f"{note.title}: {note.summary}", SECTION_MAX)), SECTION_MAX)
    return text, blocks


def teams_card(note: Note) -> dict:
    """The Adaptive Card of a note."""
    body: list[dict] = [
        _rich(
            plain(note.title, 300),
            size="Medium",
            weight="Bolder",
            color=TEAMS_COLORS.get(note.tone, "Default"),
        ),
        _rich(plain(note.summary, SUMMARY_MAX)),
    ]
    if note.facts:
        facts = [
            {"title": teams_markdown(label), "value": teams_markdown(plain(value, FACT_MAX))}
            for label, value in note.facts
        ]
        body.append({"type": "FactSet", "facts": facts})
    if note.footer:
        body.append(_rich(plain(note.footer, 300), size="Small", isSubtle=True))
    actions = [
        {"type": "Action.OpenUrl", "title": plain(label, ACTION_TITLE_MAX), "url": target}
        for label, url in note.links[:ACTIONS_MAX]
        if (target := urls.http_url(url))
    ]
    card: dict = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return card


def _plain_text(value: object, limit: int) -> dict:
    return {"type": "plain_text", "text": plain(value, limit) or "-", "emoji": False}


def _rich(text: str, **style) -> dict:
    return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text or "-", **style}]}


def _slack_links(links: tuple[tuple[str, str], ...]) -> str:
    """The links as one mrkdwn line, as many as fit."""
    line = ""
    for label, url in links[:LINKS_MAX]:
        link = slack_link(label, url)
        if link is None:
            continue
        joined = f"{line}  ·  {link}" if line else link
        if len(joined) > SECTION_MAX:
            break
        line = joined
    return line


def _cut(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with an ellipsis, never inside an entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"
