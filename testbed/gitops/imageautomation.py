"""Flux image-automation-controller stand-in, over ImageUpdateAutomation objects.

As upstream (the Setters strategy): every `spec.interval`, unless `spec.suspend`, it reads
the files under `spec.update.path` at the head of the GitRepository of `spec.sourceRef`,
rewrites each value marked with a setter comment such as
`image: shop/web:1 # {"$imagepolicy": "<namespace>:<policy>"}` (or `...:<policy>:tag`,
`...:<policy>:name`) to the policy's latest image, and commits and pushes the change with
the author and message template of `spec.git.commit`; then it records
`status.lastAutomationRunTime`, `lastPushCommit`, `lastPushTime`, `observedPolicies` and
`observedSourceRevision`. This is how a bad tag gets promoted again after a revert.

Simplifies: ImagePolicy objects (image-reflector-controller) are not served here; the
latest image of each policy is what the test puts in `policies` ("ns:name" -> image).
Commits go to the checked-out branch of the local repository (no push branch, signing or
templated messages); policySelector is not read.
"""

from __future__ import annotations

import re
from pathlib import Path

from testbed.gitops.cluster import body, now
from testbed.gitops.flux import FluxLoop, ready

API = "image.toolkit.fluxcd.io/v1beta2"
DEFAULT_MESSAGE = "Update from image update automation"
# `<key>: <value> # {"$imagepolicy": "ns:policy[:tag|:name]"}`, the value unquoted or quoted.
_SETTER = re.compile(
    r"""^(?P<head>\s*(?:-\s+)?[\w.-]+:\s*)(?P<quote>["']?)(?P<value>[^"'\s#]+)(?P=quote)"""
    r"""(?P<tail>\s*#\s*\{"\$imagepolicy":\s*"(?P<ref>[^"]+)"\}\s*)$""",
    re.MULTILINE,
)


class ImageAutomation(FluxLoop):
    """image-automation-controller for the ImageUpdateAutomations in `namespace`."""

    name = "image-automation-controller"
    api, kind = API, "ImageUpdateAutomation"

    def __init__(self, kubeconfig: Path, *, namespace: str | None = None, period: float = 0.2):
        super().__init__(kubeconfig, namespace=namespace, period=period)
        self.policies: dict[str, str] = {}  # "ns:policy" -> "repository:tag"

    def sync(self, automation: dict) -> dict:
        spec = automation["spec"]
        repo, sha, revision = self.source(automation, spec["sourceRef"])
        path = (spec.get("update") or {}).get("path", "")
        changed, observed = {}, {}
        for name in repo.files(sha, path):
            text = repo.show(sha, name)
            updated = _SETTER.sub(lambda m: self._set(m, observed), text)
            if updated != text:
                changed[name] = updated
        status = {
            "lastAutomationRunTime": now(),
            "observedSourceRevision": revision,
            "observedPolicies": observed,
        }
        if changed:
            commit = spec.get("git", {}).get("commit", {})
            author = commit.get("author", {})
            pushed = repo.commit(
                changed,
                commit.get("messageTemplate") or DEFAULT_MESSAGE,
                author=(author.get("name", ""), author["email"]) if author else None,
            )
            status.update({"lastPushCommit": pushed, "lastPushTime": now()})
        message = (
            f"pushed commit '{status['lastPushCommit'][:7]}'" if changed else "no updates made"
        )
        status["conditions"] = [ready(True, "Succeeded", message)]
        return status

    def _set(self, match: re.Match, observed: dict) -> str:
        ref = match["ref"]
        policy, _, part = ref.partition(":")[2].partition(":")
        latest = self.policies.get(":".join(ref.split(":")[:2]))
        if latest is None:
            return match[0]
        name, _, tag = latest.rpartition(":")
        observed[policy] = {"name": name, "tag": tag}
        value = {"tag": tag, "name": name}.get(part, latest)
        return f"{match['head']}{match['quote']}{value}{match['quote']}{match['tail']}"


def image_update_automation(
    name: str, source: str, path: str = "", interval: str = "2s", version: str = API
) -> dict:
    """An ImageUpdateAutomation body updating the setters under `path` of GitRepository
    `source` (apiVersion v1beta2 by default; v1 serves the same object)."""
    spec = {
        "interval": interval,
        "sourceRef": {"kind": "GitRepository", "name": source},
        "git": {
            "commit": {
                "author": {"name": "fluxcdbot", "email": "fluxcdbot@users.noreply.github.com"}
            }
        },
        "update": {"strategy": "Setters", "path": path},
    }
    return body(version, "ImageUpdateAutomation", name, spec)
