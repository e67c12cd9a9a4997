"""Helm's release storage (core/integrations/helmstorage.py): Helm's own encoding, and what
is refused, against Secrets built independently of the codec (tests/helm_releases.py)."""

import base64
import gzip
import json

import pytest

from core.integrations import helmstorage
from core.integrations.helmstorage import BadRelease, ReleaseStorage, from_secret
from tests.helm_releases import (
    NOW,
    SERVICE,
    Secrets,
    read,
    release,
    secret,
    wire,
)

# -- the codec ------------------------------------------------------------------------------


def test_a_release_round_trips_through_helms_double_base64_and_gzip():
    body = release(2, "deployed", "shop/web:2")
    value = helmstorage.to_secret_value(body)
    assert read({"data": {"release": value}}) == body  # Helm's own layering, read by hand
    assert helmstorage.decode(helmstorage.encode(body)) == body
    assert from_secret(secret(body)) == body  # written by hand, read by the codec
    plain = secret(body, data=wire(json.dumps(body).encode(), gzipped=False))
    assert from_secret(plain) == body  # older Helm: JSON never gzipped


@pytest.mark.parametrize(
    ("data", "kind", "reason"),
    [
        ("%%%", "helm.sh/release.v1", "not base64 of Helm's base64"),
        (base64.b64encode(b"%%%").decode(), "helm.sh/release.v1", "not base64"),
        (wire(b"{not json"), "helm.sh/release.v1", "not JSON"),
        (wire(b"[1, 2]"), "helm.sh/release.v1", "not a JSON object"),
        (
            wire(b'{"version": "2", "info": {"status": "deployed"}}'),
            "helm.sh/release.v1",
            "version",
        ),
        (wire(b'{"version": 2, "info": {}}'), "helm.sh/release.v1", "info.status"),
        (wire(json.dumps(release(1, "deployed", "x")).encode()), "Opaque", "type is 'Opaque'"),
    ],
)
def test_a_secret_that_stores_no_release_is_refused_with_the_reason(data, kind, reason):
    with pytest.raises(BadRelease, match=reason):
        from_secret(secret(release(1, "deployed", "x"), data=data, kind=kind))


def test_truncated_gzip_and_a_gzip_bomb_are_refused(monkeypatch):
    packed = gzip.compress(json.dumps(release(1, "deployed", "x")).encode())
    truncated = base64.b64encode(base64.b64encode(packed[:-12])).decode()
    with pytest.raises(BadRelease, match="truncated"):
        from_secret(secret(release(1, "deployed", "x"), data=truncated))
    monkeypatch.setattr(helmstorage, "MAX_RELEASE_BYTES", 1000)
    bomb = wire(b'{"pad": "' + b"0" * 5000 + b'"}')
    with pytest.raises(BadRelease, match="inflates past 1000 bytes"):
        from_secret(secret(release(1, "deployed", "x"), data=bomb))


def test_a_corrupt_secret_is_listed_unreadable_and_the_others_read():
    corrupt = secret(release(3, "deployed", "x"), data=wire(b"\x00garbage"))
    other = secret(release(4, "deployed", "x"))
    other["data"]["release"] = wire(
        json.dumps({**release(4, "deployed", "x"), "name": "api"}).encode()
    )
    objects = Secrets(secret(release(1, "superseded", "a")), corrupt, other)
    history = ReleaseStorage(objects, lambda: NOW).history("shop", "web")  # type: ignore[arg-type]
    assert [s.version for s in history.releases] == [1]
    reasons = {u.secret: u.reason for u in history.unreadable}
    assert reasons["sh.helm.release.v1.web.v3"] == "the release is not JSON"
    assert reasons["sh.helm.release.v1.web.v4"] == "it stores release 'api'"
    assert history.latest() == 4  # revision 5 is the next free name


def test_manifest_documents_that_are_not_mappings_or_not_yaml_are_left_out():
    text = f"---\n# Source: a\n{SERVICE}---\n: : [unclosed\n---\n# only a comment\n---\n- a list\n"
    assert [d["kind"] for d in helmstorage.manifests(text)] == ["Service"]
