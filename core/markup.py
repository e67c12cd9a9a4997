"""Untrusted text made safe where people read it: escaped for Jira wiki markup, as plain
one-line text (Jira's summary, PagerDuty's), or as HTML (the dashboard), with invisible
characters shown in each.

Alert names, labels, annotations, URLs, images and CI fields come from whoever can send a
webhook. In a Jira description they must not become markup (`[text|http://evil]`,
`!image!`, `{html}`, `}}` breakouts, `|` cells, `h1.`, `----`, `\\\\` breaks, `[~user]`
mentions, lists); and a zero-width or bidirectional character must not let one workload
name look like another, so each is shown as `<U+200B>`.
"""

import re
import unicodedata

from markupsafe import Markup, escape

from core import urls

# One pass over: the characters Jira's renderer unescapes after a backslash (its
# BackslashEscapeRendererComponent); a backslash, which cannot escape itself (`\\` is a
# line break) and is written as an entity; and an ampersand that would start a named
# entity (`&rlm;`), written as `&amp;` (a numeric one loses its `#` to an escape).
_ESCAPE = re.compile(r"[-#*_+?^~|%{}\[\]()!@\\]|&(?=[A-Za-z][A-Za-z0-9]*;)")
_ESCAPED = {"\\": "&#92;", "&": "&amp;"}
# Block markup only counts at the start of a line: a value never starts one (line breaks
# become spaces), but the text may sit first on a line, so a leading `h1.` / `bq.` loses
# its first letter to an entity.
_BLOCK_START = re.compile(r"^(\s*)(h(?=[1-6]\.)|b(?=q\.))")
_LINE_BREAKS = re.compile(r"[\r\n\t\v\f\u0085\u2028\u2029]")
# Unicode "format" characters (zero-width, bidirectional controls, soft hyphen, BOM...),
# controls, and the fillers that render as blank letters.
_INVISIBLE_CATEGORIES = frozenset(("Cf", "Cc", "Co", "Cs", "Zl", "Zp"))
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def is_invisible(char: str) -> bool:
    """Whether `char` shows nothing (or reorders what follows) where it is printed."""
    return char in _FILLERS or unicodedata.category(char) in _INVISIBLE_CATEGORIES


def has_invisible(text: str) -> bool:
    """Whether `text` holds a character that is_invisible."""
    return not (text.isascii() and text.isprintable()) and any(map(is_invisible, text))


def marker(char: str) -> str:
    """How an invisible character is shown: `<U+200B>`."""
    return f"<U+{ord(char):04X}>"


def reveal(value: object) -> str:
    """`value` as text with every invisible character replaced by its marker."""
    text = "" if value is None else str(value)
    if not has_invisible(text):
        return text
    return "".join(marker(char) if is_invisible(char) else char for char in text)


def html(value: object) -> Markup:
    """`value` as HTML text, each invisible character a marked `<U+200B>` span."""
    text = "" if value is None else str(value)
    if not has_invisible(text):
        return escape(text)
    return Markup("").join(
        Markup('<span class="invisible" title="invisible character">{}</span>').format(marker(c))
        if is_invisible(c)
        else escape(c)
        for c in text
    )


def wiki(value: object) -> str:
    """`value` as Jira wiki text that renders as exactly that text, on one line."""
    text = "" if value is None else str(value)
    text = reveal(_LINE_BREAKS.sub(" ", text))
    text = _ESCAPE.sub(_escape, text)
    return _BLOCK_START.sub(lambda found: f"{found[1]}&#{ord(found[2])};", text, count=1)


def _escape(match: re.Match) -> str:
    char = match.group()
    return _ESCAPED.get(char) or "\\" + char


def plain(value: object) -> str:
    """`value` on one line with invisible characters shown (Jira's summary, PagerDuty's)."""
    text = "" if value is None else str(value)
    return reveal(_LINE_BREAKS.sub(" ", text))


def link(text: str, url: object) -> str:
    """A wiki link to `url` when it is an http(s) URL, else the text alone, saying why."""
    target = urls.http_url(url)
    if target is None:
        return f"{wiki(text)} (not linked: not an http or https URL)" if url else wiki(text)
    return f"[{wiki(text)}|{urls.for_markup(target)}]"
