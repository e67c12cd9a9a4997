"""The fast path (receiver/fastpath.py) against the pydantic path, body for body.

For every generated body, valid, near-valid or hostile: when the fast path gives events,
the pydantic models accept the body and give the same events, byte for byte in their
records (timestamps with their offset, dict order, -0.0); otherwise the fast path defers.
What the receiver does (`_parse`) gives those events or raises the models' own errors.
"""

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from config.settings import Settings
from receiver import fastpath, limits, payloads
from receiver.bodies import may_spell_non_finite, reject_non_finite
from tests import samples

CHECKS = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SOURCES = st.sampled_from(["alertmanager", "grafana"])

SOME_TEXT = ["", " ", "\x00", "\u202eevil", "🙂", "é", "a" * 300]
# Text that encodes: controls, right-to-left marks, emoji, but no lone surrogate.
fine_text = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12), st.sampled_from(SOME_TEXT)
)
# Lone surrogates too: invalid JSON escapes, or invalid UTF-8 when encoded as bytes.
odd_text = st.one_of(
    st.text(st.characters(codec=None), max_size=12), st.sampled_from([*SOME_TEXT, "\ud800"])
)


def urls_of(text):
    return st.one_of(
        text,
        st.sampled_from(
            [
                "https://grafana/d/abc",
                "http://prometheus:9090/graph?g0.expr=up",
                "HTTP://[::1]:80/x",
                "http://ünïcode.example/",
                "javascript:alert(1)",
                "//evil.example/",
                " https://evil.example/",
                "https://evil.example/\u202egpj.exe",
                "http://h/" + "x" * 2100,
            ]
        ),
    )


urls = urls_of(odd_text)

ZONES = [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=23, minutes=59))]
good_moments = st.one_of(
    st.sampled_from(
        [
            samples.ZERO_TIME,
            "2026-11-26T10:00:00.123456789Z",
            "2026-11-26T12:00:00+02:00",
            "2026-11-26t10:00:00z",
            "2026-11-26 10:00:00Z",
            "2026-11-26T23:59:60Z",
            "1970-01-01T00:00:00Z",
            "8999-12-31T23:59:59-23:59",
        ]
    ),
    st.datetimes(datetime(1970, 1, 2), timezones=st.sampled_from(ZONES)).map(
        lambda moment: moment.isoformat()
    ),
)
moments = st.one_of(
    good_moments,
    st.sampled_from(
        [
            "2026-11-26T10:00:00",
            "2026-11-26",
            "0001-01-01T00:00:00+14:00",
            "1969-12-31T23:59:59Z",
            "9999-12-31T23:59:59Z",
            "1700000000",
            "yesterday",
        ]
    ),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.none(),
)
numbers = st.one_of(
    st.floats(),  # NaN and infinities are written as NaN/Infinity by json.dumps
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([-0.0, 1e308, 2.2250738585072011e-308, 0.1]),
)


def json_of(scalars, keys):
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)
        ),
        max_leaves=8,
    )


finite = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([-0.0, 1e308, 2.2250738585072011e-308, 0.1]),
)
json_values = json_of(st.one_of(st.none(), st.booleans(), numbers, odd_text), odd_text)
fine_json = json_of(st.one_of(st.none(), st.booleans(), finite, fine_text), fine_text)


def labels_of(text):
    return st.dictionaries(
        st.one_of(st.sampled_from(["alertname", "namespace", "deployment"]), text), text, max_size=4
    )


def webhooks(good: bool):
    """Webhook documents: each field of its type with odd content (`good`), or now and
    then any JSON value instead (most likely a 400)."""

    def sometimes(valid):
        return valid if good else st.one_of(*[valid] * 9, json_values)

    text, link = (fine_text, urls_of(fine_text)) if good else (odd_text, urls)
    value = st.dictionaries(text, (finite if good else numbers) | st.none())
    labels = sometimes(labels_of(text))
    alert = st.fixed_dictionaries(
        {
            "status": sometimes(st.sampled_from(["firing", "resolved"])),
            "startsAt": good_moments if good else moments,
            "labels": labels,
        },
        optional={
            "annotations": labels,
            "endsAt": good_moments if good else moments,
            "generatorURL": sometimes(link),
            "fingerprint": sometimes(st.one_of(text, st.text(min_size=250, max_size=260))),
            "dashboardURL": sometimes(link),
            "panelURL": link,
            "silenceURL": link,
            "imageURL": sometimes(link),
            "values": sometimes(st.none() | value),
            "valueString": sometimes(text),
            "somethingNew": fine_json if good else json_values,
        },
    )
    return st.fixed_dictionaries(
        {"alerts": sometimes(st.lists(alert, max_size=4))},
        optional={
            "version": sometimes(text),
            "groupKey": sometimes(text),
            "status": sometimes(st.sampled_from(["firing", "resolved"])),
            "receiver": sometimes(text),
            "commonLabels": labels,
            "externalURL": sometimes(link),
            "truncatedAlerts": sometimes(st.integers(min_value=-(2**70), max_value=2**70)),
            "orgId": sometimes(st.integers(min_value=-(2**70), max_value=2**70) | st.none()),
            "title": sometimes(text),
            "benchSequence": fine_json if good else json_values,
        },
    )


webhook = st.one_of(webhooks(good=True), webhooks(good=False))


def encoded(document: dict, ascii_only: bool) -> bytes:
    """JSON as a client might send it; lone surrogates as raw bytes (invalid UTF-8) too."""
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# Inserted right after an object's opening brace: duplicate and unknown keys at every
# level, values parsers disagree on, and nesting around pydantic's limit.
FIELDS = [
    '"status":"resolved"',
    '"status":"pending"',
    '"alerts":[]',
    '"labels":{"a":"1"}',
    '"startsAt":"2026-11-26T12:00:00+02:00"',
    '"fingerprint":""',
    '"groupKey":"other"',
    '"externalURL":"javascript:x"',
    '"endsAt":null',
    '"generatorURL":null',
    '"values":{"A":1e400}',
    '"values":{"A":123456789012345678901234567890,"B":-0}',
    '"truncatedAlerts":1.0',
    '"truncatedAlerts":99999999999999999999',
    '"x":1e400',
    '"x":"NaN"',
    '"x":NaN',
    '"x":"\\ud800"',
    '"x":"\\udc00\\ud800"',
    '"x":"\xff"',
    '"x":"\ud800"',
    '"x":' + nested(60),
    '"x":' + nested(140),
    '"x":' + nested(199),
    '"x":' + nested(240),
]


@st.composite
def near_valid(draw) -> bytes:
    """A valid sample webhook, changed a little: a field inserted, bytes cut or replaced."""
    alerts = [samples.grafana_alert() if draw(st.booleans()) else samples.am_alert()]
    body = encoded(samples.alertmanager(*alerts * draw(st.integers(1, 3))), draw(st.booleans()))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        position = draw(st.integers(min_value=0, max_value=len(body)))
        change = draw(st.sampled_from(["field", "field", "replace", "delete", "insert"]))
        if change == "field":
            braces = [i + 1 for i, byte in enumerate(body) if byte == ord("{")]
            at = draw(st.sampled_from(braces))
            inserted = draw(st.sampled_from(FIELDS)).encode("utf-8", "surrogatepass")
            body = body[:at] + inserted + b"," + body[at:]
        elif change == "replace" and position < len(body):
            body = body[:position] + bytes([draw(st.integers(0, 255))]) + body[position + 1 :]
        elif change == "delete":
            body = body[:position] + body[position + 1 :]
        else:
            body = body[:position] + draw(st.binary(min_size=1, max_size=3)) + body[position:]
    return body


bodies = st.one_of(
    st.builds(encoded, webhooks(good=True), st.booleans()),
    st.builds(encoded, webhook, st.booleans()),
    near_valid(),
    st.binary(max_size=60),
)


def reference(source, body: bytes) -> list | ValidationError:
    """The pydantic path without any cache: events, or the models' error."""
    try:
        reject_non_finite(body)
        hook = payloads._WEBHOOKS[source].model_validate_json(body)
    except ValidationError as exc:
        return exc
    return [payloads._event(source, hook, alert) for alert in hook.alerts]


def records(events: list) -> list[tuple[str, str]]:
    return [(event.episode_id, repr(event.to_record())) for event in events]


def fast(source, body: bytes, cache: fastpath.RecentAlerts | None = None):
    cache = cache or fastpath.RecentAlerts(100, 4096)
    return cache.events(source, body, payloads._built)


SHARED = fastpath.RecentAlerts(1_000, 4096)  # across examples: alerts seen before are hits


@CHECKS
@given(source=SOURCES, body=bodies)
def test_the_fast_path_gives_the_pydantic_events_or_defers(source, body):
    expected = reference(source, body)
    for cache in (None, SHARED, SHARED):  # new, then maybe seen, then surely seen
        found = fast(source, body, cache)
        if found is not None:
            assert not isinstance(expected, ValidationError), expected
            assert records(found) == records(expected)


@CHECKS
@given(source=SOURCES, body=bodies)
def test_the_receiver_gives_the_same_events_or_the_same_errors(source, body):
    expected = reference(source, body)
    try:
        found = payloads._parse(source, body)
    except ValidationError as exc:
        assert isinstance(expected, ValidationError)
        assert exc.errors(include_context=False) == expected.errors(include_context=False)
    else:
        assert not isinstance(expected, ValidationError), expected
        assert records(found) == records(expected)


@settings(CHECKS, max_examples=100)
@given(source=SOURCES, document=webhook, group=odd_text)
def test_an_alert_seen_in_another_group_is_not_reused(source, document, group):
    cache = fastpath.RecentAlerts(100, 4096)
    body = encoded(document, True)
    fast(source, body, cache)
    moved = encoded({**document, "groupKey": group, "externalURL": group}, True)
    found = fast(source, moved, cache)
    if found is not None:
        assert records(found) == records(reference(source, moved))


@pytest.mark.parametrize(
    ("source", "body"),
    [
        ("alertmanager", samples.alertmanager(samples.am_alert())),
        ("alertmanager", samples.alertmanager(samples.am_alert(), samples.am_alert("B"))),
        ("alertmanager", {"alerts": []}),
        ("grafana", samples.grafana()),
        ("grafana", {**samples.grafana(), "orgId": None, "benchSequence": 7}),
    ],
)
def test_real_webhooks_take_the_fast_path(source, body):
    raw = json.dumps(body, ensure_ascii=False).encode()
    cache = fastpath.RecentAlerts(100, 4096)
    first = fast(source, raw, cache)
    assert first is not None and records(first) == records(reference(source, raw))
    again = fast(source, raw, cache)  # every alert seen: nothing validated again
    assert again is not None and all(a is b for a, b in zip(again, first, strict=True))


@pytest.mark.parametrize(
    "body",
    [
        b'{"alerts":[],"x":"\xff"}',  # invalid UTF-8 where msgspec does not look
        b'{"alerts":[],"x":' + nested(210).encode() + b"}",  # deeper than pydantic allows
        b'{"alerts":[],"x":1e400,"y":"Infinity"}',  # bodies.py reads it in full: a 400
        b'{"alerts":[{"status":"firing","status":"pending","labels":{},"startsAt":"2026-01-01T00:00:00Z"}]}',
    ],
)
def test_bodies_msgspec_would_take_and_pydantic_refuses_are_deferred(body):
    assert isinstance(reference("alertmanager", body), ValidationError)
    assert fast("alertmanager", body) is None


def test_the_alert_cache_is_bounded_in_entries_and_alert_size():
    cache = fastpath.RecentAlerts(2, 600)
    for n in range(3):
        fast(
            "alertmanager",
            json.dumps(samples.alertmanager(samples.am_alert(str(n)))).encode(),
            cache,
        )
    assert len(cache.seen) == 2
    big = samples.am_alert(summary="x" * 600)
    fast("alertmanager", json.dumps(samples.alertmanager(big)).encode(), cache)
    assert all(len(alert) <= 600 for alert in cache.seen)


@pytest.mark.parametrize(
    ("body", "spelt"),
    [
        (b'{"a":"NaN"}', True),
        (b'{"a":Infinity}', True),
        (b'{"a":"Nan","b":"INFINITY"}', False),
        (b'{"a":"N","b":"I"}', False),
        (b"{}", False),
    ],
)
def test_non_finite_spellings_are_found_exactly(body, spelt):
    assert may_spell_non_finite(body) is spelt


def test_a_repeated_alert_is_fitted_to_the_limits_once_per_setting():
    [event] = fast("alertmanager", json.dumps(samples.alertmanager(samples.am_alert())).encode())
    big = dataclasses.replace(event, annotations={"summary": "x" * 5000})
    roomy, tight = Settings(), Settings(max_alert_bytes=1024)
    assert limits.bounded([big, big], roomy) == [big, big]
    first = limits.bounded([big], tight)
    again = limits.bounded([big], tight)
    assert again[0] is first[0] is not big  # fitted once, reused
    assert first[0].annotations[limits.MARKER_ANNOTATION].endswith("dropped")
    assert limits.bounded([big], roomy) == [big]  # the other setting's answer
