"""URLs from outside (CI, Alertmanager, Grafana): which may become a link, and in what form.

Only an absolute http(s) URL with a host is ever stored as a link or rendered as one: a
`javascript:`, `data:` or `file:` URL turned into an href runs or opens whatever it names.
"""

import re
import unicodedata
from urllib.parse import urlsplit

MAX_LENGTH = 2048
# Whitespace and controls: browsers strip or skip some of them while parsing a URL (so
# "java\tscript:" is "javascript:"), and none belongs in a URL unencoded.
_UNSAFE_ASCII = re.compile(r"[\x00-\x20\x7f]")
# Outside ASCII (an IRI may hold letters): no controls, no separators, no invisible
# format characters (zero-width, bidirectional overrides) that would disguise it.
_UNSAFE_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Zs", "Zl", "Zp"))
# Characters Jira's wiki markup reads inside a link ([text|url]) or as formatting; quoted
# in the URL of a Jira link. `%`, `+`, `&`, `=`, `#`, `?` keep their URL meaning.
_MARKUP = re.compile(r"[\[\]|{}!*^~\\()<>\"' ]")


# The common case, checked in one match (webhooks carry a URL per alert): ASCII, scheme,
# optional userinfo, a host name or IPv6 literal, optional port, then no whitespace or
# control character. Anything else takes the careful path below.
_PLAIN = re.compile(
    r"(?i:https?)://(?:[^/?#@\x00-\x20\x7f]*@)?(?:[^/?#@:\[\]\x00-\x20\x7f]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?"
    r"(?:[/?#][^\x00-\x20\x7f]*)?"
)


def http_url(value: object) -> str | None:
    """`value` when it is an absolute http(s) URL with a host, else None."""
    if not isinstance(value, str) or not value or len(value) > MAX_LENGTH:
        return None
    if value.isascii() and _PLAIN.fullmatch(value):
        return value
    scheme = value[:8].lower()
    if scheme != "https://" and not scheme.startswith("http://"):
        return None
    if _UNSAFE_ASCII.search(value) or not (value.isascii() or _printable(value)):
        return None
    try:
        host = urlsplit(value).hostname
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    return value if host else None


def _printable(text: str) -> bool:
    return not any(unicodedata.category(char) in _UNSAFE_CATEGORIES for char in text)


def https_url(value: object) -> str | None:
    """`value` when it is an absolute https URL with a host (PagerDuty's rule for images)."""
    found = http_url(value)
    return found if found and found[:8].lower() == "https://" else None


def for_markup(url: str) -> str:
    """An http(s) URL with the characters wiki markup would read percent-encoded."""
    return _MARKUP.sub(lambda match: f"%{ord(match.group()):02X}", url)


_COMMIT = re.compile(r"[0-9a-fA-F]{7,64}")
# Known forges' compare pages, from the older commit to the newer.
_COMPARE = {
    "github.com": "{repo}/compare/{old}...{new}",
    "gitlab.com": "{repo}/-/compare/{old}...{new}",
    "bitbucket.org": "{repo}/branches/compare/{new}%0D{old}",
}


def compare_url(repository: str, old: str, new: str) -> str | None:
    """The page comparing commit `old` with `new` on a known forge (GitHub, GitLab,
    Bitbucket; a host named gitlab.* is taken for GitLab), or None: an unknown host, a
    repository that is not an http(s) URL, or commits that are not hex SHAs."""
    if not (http_url(repository) and _COMMIT.fullmatch(old) and _COMMIT.fullmatch(new)):
        return None
    parts = urlsplit(repository)
    host = (parts.hostname or "").lower()
    pattern = _COMPARE.get(host) or (_COMPARE["gitlab.com"] if host.startswith("gitlab.") else None)
    if pattern is None or parts.query or parts.fragment:
        return None
    repo = repository.rstrip("/").removesuffix(".git")
    return pattern.format(repo=repo, old=old, new=new)
