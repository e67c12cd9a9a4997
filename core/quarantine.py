"""Quarantine: which image references a rolled-back revision keeps out, and which it does not.

When Backstop has reverted a revision (verified, or verification_failed), that revision is
quarantined (`quarantine_for`): the image references its pod template named, and the
digests its pods ran (`imageID` in the pod status, captured in the rollback's evidence).
A deploy is refused while a quarantine in force (neither ended nor expired) matches one
of its images (`matching`):

- the same repository and tag (`shop/checkout:2.1` and `docker.io/shop/checkout:2.1` are
  the same: Docker Hub's implicit registry and `library/` are filled in, and no tag means
  `latest`), or
- the same digest (`...@sha256:<hex>`), whatever the tag or repository says: the very
  bytes that were rolled back, re-tagged or not.

A fix is a new image, and is never matched. A workload given in the check narrows the
match to that workload's quarantines.
"""

from dataclasses import dataclass
from datetime import datetime

from config.quarantine import QuarantinePolicy
from core.records import Quarantine, Rollback, Rollout

DOCKER_HUB = "docker.io"
HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")
# Prefixes some container runtimes put before an imageID.
RUNTIME_PREFIXES = ("docker-pullable://", "docker://", "containerd://")


@dataclass(frozen=True)
class Reference:
    """An image reference taken apart: repository (with its registry), tag, digest."""

    repository: str
    tag: str
    digest: str


def parse(reference: str) -> Reference:
    """`reference` in its canonical parts; "" for a part it lacks (no tag, no digest)."""
    text = reference.strip()
    for prefix in RUNTIME_PREFIXES:
        text = text.removeprefix(prefix)
    name, _, digest = text.partition("@")
    tag = ""
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:  # a colon after the last slash is a tag, not a registry's port
        name, tag = name[:colon], name[colon + 1 :]
    return Reference(_repository(name), tag, digest.lower())


def _repository(name: str) -> str:
    """The repository with its registry, as Docker resolves a short name."""
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        first, rest = DOCKER_HUB, name
    if first in HUB_ALIASES:
        first = DOCKER_HUB
    if first == DOCKER_HUB and "/" not in rest:
        rest = f"library/{rest}"
    return f"{first}/{rest}".lower()


def digest_of(image_id: str) -> str:
    """The repository digest an `imageID` names ("" for a bare local image id)."""
    return parse(image_id).digest if "@" in image_id else ""


def in_force(quarantine: Quarantine, now: datetime) -> bool:
    """Neither ended by a human nor past its expiry."""
    return quarantine.active and now < quarantine.expires_at


def status(quarantine: Quarantine, now: datetime) -> str:
    """`active`, `expired` (its time ran out) or how it ended (`released`)."""
    if quarantine.end is not None:
        return quarantine.end
    return "active" if now < quarantine.expires_at else "expired"


def matches(quarantine: Quarantine, image: str) -> str | None:
    """Why `image` is one of the quarantined revision's images, or None."""
    wanted = parse(image)
    digests = {parse(d).digest for d in quarantine.digests} - {""}
    for quarantined in map(parse, quarantine.images):
        if quarantined.digest:
            digests.add(quarantined.digest)
        same_tag = (quarantined.repository, quarantined.tag or "latest") == (
            wanted.repository,
            wanted.tag or "latest",
        )
        if same_tag and not wanted.digest:
            return f"{wanted.repository}:{wanted.tag or 'latest'} is a quarantined image"
    if wanted.digest and wanted.digest in digests:
        return f"digest {wanted.digest} is a quarantined image's"
    return None


def matching(
    quarantines: list[Quarantine], images: list[str], now: datetime, workload: str | None = None
) -> list[tuple[Quarantine, str, str]]:
    """(quarantine, image, why) for every image a quarantine in force keeps out; only the
    quarantines of `workload` (its key, or `namespace/kind/name`) when one is given."""
    found = []
    for quarantine in quarantines:
        if not in_force(quarantine, now) or not _of_workload(quarantine, workload):
            continue
        for image in images:
            why = matches(quarantine, image)
            if why is not None:
                found.append((quarantine, image, why))
    return found


def _of_workload(quarantine: Quarantine, workload: str | None) -> bool:
    if workload is None:
        return True
    key = quarantine.workload.workload().key
    return workload in (key, key.split("/", 1)[1])


def quarantine_for(
    rollback: Rollback,
    rollout: Rollout | None,
    evidence: dict | None,
    policy: QuarantinePolicy,
    now: datetime,
) -> Quarantine | None:
    """The quarantine of a revision `rollback` reverted, or None when there is nothing to
    quarantine (switched off, a dry run, no image known)."""
    if not policy.enabled or rollback.mode != "enforce":
        return None
    images = list(rollout.images) if rollout is not None else []
    digests = sorted(
        {
            digest_of(container.get("imageID") or "")
            for pod in (evidence or {}).get("pods", [])
            for container in pod.get("containers", [])
        }
        - {""}
    )
    if not images and not digests:
        return None
    return Quarantine(
        id=rollback.id,
        workload=rollback.workload,
        revision=rollback.bad_revision,
        template_hash=rollout.template_hash if rollout is not None else "",
        images=images,
        digests=digests,
        rollback_id=rollback.id,
        decision_id=rollback.decision_id,
        reason=f"rolled back: {rollback.status} ({rollback.reason})",
        quarantined_at=now,
        expires_at=now + policy.ttl,
    )
