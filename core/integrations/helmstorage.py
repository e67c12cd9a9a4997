"""Helm's release storage: one Secret per release revision, as the Helm CLI (v3 and v4,
pkg/storage/driver/secrets.go) keeps it, read and written through `Objects`.

A revision of release `<name>` lives in the Secret `sh.helm.release.v1.<name>.v<version>`
in the release namespace, of type `helm.sh/release.v1`, labelled `name`, `owner: helm`,
`status`, `version`, and `createdAt` (or `modifiedAt` once updated), unix seconds. Any
other label is a release label (`helm install --labels`), which `helm rollback` copies
from its target. Its `release` entry is base64(gzip(JSON)); Secret data is base64 again on
the wire, so the API's value is decoded base64 -> base64 -> gunzip (older Helm wrote plain
JSON) -> JSON. The JSON: name, namespace, version, info {first_deployed, last_deployed,
deleted, description, status, notes}, chart, config, manifest (the rendered documents),
hooks.

`helm rollback <name> <target>` (pkg/action/rollback.go) writes revision N+1 (N the
highest stored) copying the target's chart, config, manifest and hooks, `deployed`,
described `Rollback to <target>`, first deployed when the current release was, and marks
every other deployed revision `superseded`. `write_rollback` does the same, for a revert
Backstop has already applied.

Release Secrets are untrusted input (anyone who may write Secrets in the namespace can
forge one): a Secret whose payload is not a release is listed as unreadable, with why,
never raised.
"""

import base64
import binascii
import copy
import gzip
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import yaml

from core.integrations.objects import Objects

SECRET_TYPE = "helm.sh/release.v1"  # noqa: S105 (a Secret type, not a password)
OWNER = "helm"
DEPLOYED = "deployed"
SUPERSEDED = "superseded"
# The labels Helm sets itself; the others on a release Secret are release labels.
SYSTEM_LABELS = frozenset({"name", "owner", "status", "version", "createdAt", "modifiedAt"})
GZIP_MAGIC = b"\x1f\x8b\x08"
# A Secret holds at most 1 MiB, but gzip inflates a thousandfold: a forged Secret must not
# exhaust the worker's memory. Real releases are far below this.
MAX_RELEASE_BYTES = 32 * 1024 * 1024
# Helm's release names (chartutil.ValidateReleaseName): only these can be label values, so
# any other name (a hand-edited annotation) names no release at all.
RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_NAME = 53
# Helm's releaseutil.SplitManifests splits a manifest on lines starting `---`.
DOCUMENT_SEPARATOR = re.compile(r"^---.*$", re.MULTILINE)


class BadRelease(ValueError):
    """A Secret's payload is not a Helm release."""


# -- the codec ------------------------------------------------------------------------------


def encode(release: dict) -> str:
    """Helm's text for a release: base64 of gzip of its JSON."""
    raw = json.dumps(release, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, 9)).decode()


def decode(text: str) -> dict:
    """A release from Helm's text (gzipped or not); BadRelease when it is none."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRelease("the release is not base64") from None
    if raw[:3] == GZIP_MAGIC:
        raw = _gunzip(raw)
    try:
        release = json.loads(raw)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
        raise BadRelease("the release is not JSON") from None
    return _checked(release)


def to_secret_value(release: dict) -> str:
    """`data.release` as the API carries it: Helm's text, base64-encoded once more."""
    return base64.b64encode(encode(release).encode()).decode()


def from_secret(secret: dict) -> dict:
    """The release a Secret (as the API returns it) stores; BadRelease when none."""
    if secret.get("type") != SECRET_TYPE:
        raise BadRelease(f"its type is {secret.get('type')!r}, not {SECRET_TYPE}")
    value = (secret.get("data") or {}).get("release")
    if not isinstance(value, str):
        raise BadRelease("it has no data.release")
    try:
        text = base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise BadRelease("data.release is not base64 of Helm's base64") from None
    return decode(text)


def _gunzip(raw: bytes) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16: a gzip header, not zlib's
    try:
        data = inflater.decompress(raw, MAX_RELEASE_BYTES)
    except zlib.error:
        raise BadRelease("the release is not valid gzip") from None
    if inflater.unconsumed_tail:
        raise BadRelease(f"the release inflates past {MAX_RELEASE_BYTES} bytes")
    if not inflater.eof:
        raise BadRelease("the release's gzip stream is truncated")
    return data


def _checked(release: object) -> dict:
    """The fields Backstop relies on, of the types Helm writes them."""
    if not isinstance(release, dict):
        raise BadRelease("the release is not a JSON object")
    version = release.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BadRelease(f"its version {version!r} is not a positive number")
    info = release.get("info")
    if not isinstance(info, dict) or not isinstance(info.get("status"), str):
        raise BadRelease("it has no info.status")
    for key in ("name", "namespace", "manifest"):
        if not isinstance(release.get(key, ""), str):
            raise BadRelease(f"its {key} is not a string")
    return release


def manifests(text: str) -> list[dict]:
    """The objects a release manifest renders; a document that is not a YAML mapping is
    left out (Helm's manifests hold one object per document)."""
    found = []
    for part in DOCUMENT_SEPARATOR.split(text):
        try:
            doc = yaml.safe_load(part)
        except yaml.YAMLError:
            continue
        if isinstance(doc, dict):
            found.append(doc)
    return found


def secret_name(name: str, version: int) -> str:
    return f"sh.helm.release.v1.{name}.v{version}"


def valid_name(name: str) -> bool:
    """Could a Helm release be called this?"""
    return len(name) <= MAX_NAME and RELEASE_NAME.match(name) is not None


def timestamp(when: datetime) -> str:
    """A time as Helm's release JSON writes it (RFC 3339, fractional seconds)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- a release's history --------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """One release revision, decoded, and the Secret that stores it."""

    release: dict
    secret: dict

    @property
    def version(self) -> int:
        return self.release["version"]

    @property
    def status(self) -> str:
        return self.release["info"]["status"]

    @property
    def manifest(self) -> str:
        return self.release.get("manifest", "")

    @property
    def annotations(self) -> dict[str, str]:
        return self.secret.get("metadata", {}).get("annotations") or {}

    @property
    def release_labels(self) -> dict[str, str]:
        """The labels given to the release (not Helm's own)."""
        labels = self.secret.get("metadata", {}).get("labels") or {}
        return {k: v for k, v in labels.items() if k not in SYSTEM_LABELS}


@dataclass(frozen=True)
class Unreadable:
    """A Secret labelled as a revision of the release that stores none; why."""

    secret: str
    reason: str
    # Its `version` label: the name N+1 would take may be held by it.
    version: int | None


@dataclass
class History:
    """The stored revisions of release `name` in `namespace`, oldest first."""

    namespace: str
    name: str
    releases: list[Stored] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)

    def deployed(self) -> Stored | None:
        """The newest revision marked deployed (Helm may have left several)."""
        deployed = [s for s in self.releases if s.status == DEPLOYED]
        return deployed[-1] if deployed else None

    def latest(self) -> int:
        """The highest version stored (unreadable Secrets included); 0 when none."""
        versions = [s.version for s in self.releases]
        versions += [u.version for u in self.unreadable if u.version is not None]
        return max(versions, default=0)

    def older_than(self, version: int) -> list[Stored]:
        """The revisions before `version`, newest first."""
        return [s for s in reversed(self.releases) if s.version < version]

    def marked(self, annotation: str, value: str) -> Stored | None:
        """The revision whose Secret carries `annotation: value`, if any."""
        return next((s for s in self.releases if s.annotations.get(annotation) == value), None)


# -- reading and writing --------------------------------------------------------------------


class ReleaseStorage:
    """Helm release Secrets, read and written through `Objects` (field manager backstop)."""

    def __init__(self, objects: Objects, clock: Callable[[], datetime]):
        self.objects = objects
        self.clock = clock

    def history(self, namespace: str, name: str, *, status: str | None = None) -> History:
        """The revisions of release `name` in `namespace` (only those labelled `status`,
        when given); a name no release can have has none."""
        history = History(namespace, name)
        if not valid_name(name):
            return history
        labels = {"owner": OWNER, "name": name, **({"status": status} if status else {})}
        found = []
        for secret in self.objects.secrets(namespace, labels):
            meta = secret.get("metadata") or {}
            try:
                release = from_secret(secret)
                if release.get("name") != name:
                    raise BadRelease(f"it stores release {release.get('name')!r}")
            except BadRelease as exc:
                version = str((meta.get("labels") or {}).get("version", ""))
                number = int(version) if version.isdigit() else None
                history.unreadable.append(Unreadable(meta.get("name", "?"), str(exc), number))
                continue
            found.append(Stored(release, secret))
        history.releases = sorted(found, key=lambda s: s.version)
        if status is not None:  # the label is a hint; the release's own status decides
            history.releases = [s for s in history.releases if s.status == status]
        return history

    def write_rollback(
        self, history: History, target: Stored, annotations: dict[str, str]
    ) -> Stored:
        """Store revision N+1 as `helm rollback` to `target` does (deployed), its Secret
        annotated with `annotations`; the revision stored. Conflict when a revision of
        that number was written meanwhile. Superseding the others is `supersede`'s."""
        current = history.deployed()
        base = current.release if current is not None else target.release
        release = rolled_back(base, target.release, history.latest() + 1, self.clock())
        labels = {
            **target.release_labels,
            "name": history.name,
            "owner": OWNER,
            "status": DEPLOYED,
            "version": str(release["version"]),
            "createdAt": str(int(self.clock().timestamp())),
        }
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": secret_name(history.name, release["version"]),
                "labels": labels,
                "annotations": annotations,
            },
            "type": SECRET_TYPE,
            "data": {"release": to_secret_value(release)},
        }
        return Stored(release, self.objects.create_secret(history.namespace, body))

    def supersede(self, stored: Stored) -> None:
        """Mark a revision superseded, in its JSON and its label, conditional on the
        Secret being as read (Conflict otherwise)."""
        release = copy.deepcopy(stored.release)
        release["info"]["status"] = SUPERSEDED
        meta = stored.secret["metadata"]
        body = {
            "metadata": {
                "resourceVersion": meta["resourceVersion"],
                "labels": {"status": SUPERSEDED, "modifiedAt": str(int(self.clock().timestamp()))},
            },
            "data": {"release": to_secret_value(release)},
        }
        self.objects.merge_secret(meta["namespace"], meta["name"], body)


def rolled_back(current: dict, target: dict, version: int, now: datetime) -> dict:
    """Revision `version` as `helm rollback` writes it: `target`'s chart, config,
    manifest, hooks (and whatever else newer Helm keeps there), deployed now, first
    deployed when `current` was."""
    release = copy.deepcopy(target)
    info: dict = {
        "first_deployed": current["info"].get("first_deployed", ""),
        "last_deployed": timestamp(now),
        "deleted": "",  # Helm's zero time
        "description": f"Rollback to {target['version']}",
        "status": DEPLOYED,
    }
    if target["info"].get("notes"):
        info["notes"] = target["info"]["notes"]
    release.update(
        name=current.get("name", target.get("name")),
        namespace=current.get("namespace", target.get("namespace")),
        version=version,
        info=info,
    )
    return release
