"""The "Git" the GitOps stand-ins read from: a real local repository, one commit per desired state.

The stand-ins reach it by URL (`file://<path>`), as Argo CD and Flux reach a remote. Tests
commit manifests (YAML files under a directory, Kubernetes objects as dicts) and change
one Deployment's image; the stand-ins resolve a revision (branch, tag or sha) to its full
sha and read that revision's manifests with `git show`, never the working tree, so an old
revision stays readable after newer commits.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

BRANCH = "main"
MANIFEST_SUFFIXES = (".yaml", ".yml")
# Commits must not depend on the user's or the machine's git configuration.
_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "backstop-tests",
    "GIT_AUTHOR_EMAIL": "tests@backstop.invalid",
    "GIT_COMMITTER_NAME": "backstop-tests",
    "GIT_COMMITTER_EMAIL": "tests@backstop.invalid",
}


class GitError(RuntimeError):
    """A git command failed (its stderr is the message)."""


class GitRepo:
    """One local repository: commit desired states, resolve revisions, read manifests."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()

    @classmethod
    def init(cls, path: Path, branch: str = BRANCH) -> GitRepo:
        """Create an empty repository at path whose default branch is `branch`."""
        Path(path).mkdir(parents=True, exist_ok=True)
        repo = cls(path)
        repo.git("init", "--quiet", f"--initial-branch={branch}")
        return repo

    @classmethod
    def from_url(cls, url: str) -> GitRepo:
        """The repository behind a `file://` URL (the only scheme the stand-ins fetch)."""
        parts = urlsplit(url)
        if parts.scheme != "file":
            raise GitError(f"only file:// repositories are reachable here, not {url!r}")
        return cls(Path(unquote(parts.path)))

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def git(self, *args: str) -> str:
        """Run one git command in the repository and return its stdout."""
        done = subprocess.run(
            ["git", "-c", "commit.gpgsign=false", *args],
            cwd=self.path,
            env={**os.environ, **_ENV},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise GitError(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def commit(
        self,
        files: Mapping[str, str | dict | list[dict] | None],
        message: str,
        author: tuple[str, str] | None = None,
    ) -> str:
        """Write files (text, one object, or a list of objects as YAML documents; None
        deletes), commit them all (as `author`, a name and email, if given), and return
        the new commit's sha."""
        for name, content in files.items():
            target = self.path / name
            if content is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content if isinstance(content, str) else dump(content))
        self.git("add", "--all", "--", *files)
        who = ["--author", f"{author[0]} <{author[1]}>"] if author else []
        self.git("commit", "--quiet", "--allow-empty", "--message", message, *who)
        return self.head()

    def set_image(self, file: str, container: str, image: str, message: str | None = None) -> str:
        """Commit `file` with every container named `container` (in any pod template of
        it) running `image`, as a developer or an image automation would; return the sha."""
        objects = load(self.show("HEAD", file))
        changed = 0
        for obj in objects:
            for spec in _pod_specs(obj):
                for entry in spec.get("containers", []):
                    if entry.get("name") == container:
                        entry["image"] = image
                        changed += 1
        if not changed:
            raise GitError(f"no container {container!r} in {file}")
        return self.commit({file: objects}, message or f"{container}: {image}")

    def head(self, branch: str = "HEAD") -> str:
        return self.resolve(branch)

    def resolve(self, revision: str) -> str:
        """The full sha of a branch, tag, short or full sha ("" and HEAD mean HEAD)."""
        name = revision or "HEAD"
        return self.git("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}").strip()

    def show(self, revision: str, file: str) -> str:
        """The text of `file` at `revision`."""
        return self.git("show", f"{self.resolve(revision)}:{file.removeprefix('./')}")

    def files(self, revision: str, path: str = "") -> list[str]:
        """The manifest files under directory `path` (or the one file `path`) at revision."""
        prefix = path.strip("/").removeprefix("./").removeprefix(".")
        listed = self.git("ls-tree", "-r", "--name-only", self.resolve(revision), "--", prefix)
        return sorted(name for name in listed.splitlines() if name.endswith(MANIFEST_SUFFIXES))

    def manifests(self, revision: str, path: str = "") -> list[dict]:
        """Every Kubernetes object under `path` at `revision`, in file order."""
        sha = self.resolve(revision)
        return [obj for name in self.files(sha, path) for obj in load(self.show(sha, name))]

    def log(self, revision: str = "HEAD") -> list[str]:
        """The shas reachable from revision, newest first."""
        return self.git("rev-list", self.resolve(revision)).split()


def load(text: str) -> list[dict]:
    """The non-empty YAML documents of text."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def dump(objects: dict | Iterable[dict]) -> str:
    """YAML documents for one object or several."""
    docs = [objects] if isinstance(objects, dict) else list(objects)
    return yaml.safe_dump_all(docs, sort_keys=False)


def _pod_specs(obj: dict) -> list[dict]:
    """The pod specs a workload object carries (Deployment-like templates, CronJobs, Pods)."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return [spec]
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template") or {}
    return [template["spec"]] if template.get("spec") else []
