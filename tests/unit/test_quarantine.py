"""Which image references a quarantined revision keeps out (core/quarantine.py): reference
parsing as Docker resolves names, tag and digest matches, expiry, the workload filter, and
what a finished rollback quarantines."""

from datetime import UTC, datetime, timedelta

import pytest

from config.quarantine import QuarantinePolicy
from core.quarantine import (
    digest_of,
    in_force,
    matches,
    matching,
    parse,
    quarantine_for,
    status,
)
from core.records import Quarantine, Rollback, Rollout, WorkloadRecord

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32
CHECKOUT = WorkloadRecord(cluster="default", namespace="shop", kind="Deployment", name="checkout")


def quarantine(**fields) -> Quarantine:
    values = {
        "id": "rb-1",
        "workload": CHECKOUT,
        "revision": "7",
        "images": ["shop/checkout:2.1", "registry.example.com:5000/sidecar:1"],
        "digests": [f"docker.io/shop/checkout@{DIGEST}"],
        "rollback_id": "rb-1",
        "decision_id": "d-1",
        "quarantined_at": NOW - timedelta(hours=1),
        "expires_at": NOW + timedelta(days=14),
    }
    return Quarantine(**{**values, **fields})


@pytest.mark.parametrize(
    ("reference", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io/library/nginx", "", ""),
        ("nginx:1.27", "docker.io/library/nginx", "1.27", ""),
        ("shop/checkout:2.1", "docker.io/shop/checkout", "2.1", ""),
        ("index.docker.io/shop/checkout:2.1", "docker.io/shop/checkout", "2.1", ""),
        ("registry.example.com:5000/sidecar", "registry.example.com:5000/sidecar", "", ""),
        ("localhost/app:dev", "localhost/app", "dev", ""),
        (f"Shop/Checkout:2.1@{DIGEST.upper()}", "docker.io/shop/checkout", "2.1", DIGEST),
        (f"docker-pullable://shop/checkout@{DIGEST}", "docker.io/shop/checkout", "", DIGEST),
    ],
)
def test_references_are_taken_apart_as_docker_resolves_them(reference, repository, tag, digest):
    assert parse(reference) == (parse(reference).__class__(repository, tag, digest))


def test_an_image_id_names_a_digest_only_with_a_repository():
    assert digest_of(f"docker.io/shop/checkout@{DIGEST}") == DIGEST
    assert digest_of(DIGEST) == ""  # a local image id: not what a deploy names


@pytest.mark.parametrize(
    "image",
    [
        "shop/checkout:2.1",
        "docker.io/shop/checkout:2.1",
        "registry.example.com:5000/sidecar:1",
        f"mirror.example.com/retagged:anything@{DIGEST}",  # the same bytes, re-tagged
    ],
)
def test_the_quarantined_images_are_matched_by_tag_or_digest(image):
    assert matches(quarantine(), image) is not None


@pytest.mark.parametrize(
    "image",
    [
        "shop/checkout:2.2",  # the fix
        "shop/checkout",  # latest is another tag
        "other/checkout:2.1",
        "registry.example.com:5000/sidecar:1@sha256:" + "cd" * 32,  # other bytes
    ],
)
def test_a_fix_or_another_image_is_never_matched(image):
    assert matches(quarantine(), image) is None


def test_only_quarantines_in_force_match():
    released = quarantine(end="released", ended_at=NOW, ended_by="api:alice")
    expired = quarantine(expires_at=NOW - timedelta(seconds=1))
    assert not in_force(released, NOW) and status(released, NOW) == "released"
    assert not in_force(expired, NOW) and status(expired, NOW) == "expired"
    assert status(quarantine(), NOW) == "active"
    assert matching([released, expired], ["shop/checkout:2.1"], NOW) == []
    [(found, image, why)] = matching([quarantine()], ["nginx", "shop/checkout:2.1"], NOW)
    assert (found.id, image) == ("rb-1", "shop/checkout:2.1") and "quarantined" in why


def test_a_workload_narrows_the_check_to_its_own_quarantines():
    q = quarantine()
    image = ["shop/checkout:2.1"]
    assert matching([q], image, NOW, "default/shop/Deployment/checkout")
    assert matching([q], image, NOW, "shop/Deployment/checkout")
    assert not matching([q], image, NOW, "shop/Deployment/cart")


def rollback(**fields) -> Rollback:
    values = {
        "id": "rb-1",
        "decision_id": "d-1",
        "workload": CHECKOUT,
        "bad_revision": "7",
        "status": "verified",
        "reason": "the previous revision is healthy",
    }
    return Rollback(**{**values, **fields})


def test_a_reverted_revision_is_quarantined_with_its_images_and_digests():
    rollout = Rollout(
        workload=CHECKOUT,
        revision="7",
        images=["shop/checkout:2.1"],
        started_at=NOW,
        template_hash="5d9c",
    )
    evidence = {
        "pods": [
            {"containers": [{"imageID": f"docker-pullable://shop/checkout@{DIGEST}"}]},
            {"containers": [{"imageID": DIGEST}, {"imageID": None}]},
        ]
    }
    made = quarantine_for(rollback(), rollout, evidence, QuarantinePolicy(), NOW)
    assert made is not None and made.id == made.rollback_id == "rb-1"
    assert made.images == ["shop/checkout:2.1"] and made.digests == [DIGEST]
    assert made.template_hash == "5d9c" and made.expires_at == NOW + timedelta(days=14)
    assert "verified" in made.reason


def test_nothing_is_quarantined_when_switched_off_in_a_dry_run_or_without_images():
    rollout = Rollout(workload=CHECKOUT, revision="7", images=["a:1"], started_at=NOW)
    off = QuarantinePolicy(enabled=False)
    assert quarantine_for(rollback(), rollout, None, off, NOW) is None
    assert quarantine_for(rollback(mode="dry-run"), rollout, None, QuarantinePolicy(), NOW) is None
    assert quarantine_for(rollback(), None, {"pods": []}, QuarantinePolicy(), NOW) is None
