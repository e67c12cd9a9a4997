"""Build kube-apiserver and kube-controller-manager once from Debian's `kubernetes` source package.

Debian bookworm ships the Kubernetes v1.20.2 source (package version
`1.20.5+really1.20.2-...`) but no server binaries, so the test stack builds the two it
needs with Debian's Go and caches them outside the repository, keyed by the source
package version: `~/.cache/backstop/kube/<version>/`. `BACKSTOP_KUBE_CACHE` names the
directory holding the binaries instead. The machine's own apt configuration is never
touched: deb-src is enabled in a private copy of its sources list, with private lists.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from testbed.kube.procs import StackError

BINARIES = ("kube-apiserver", "kube-controller-manager")
SOURCE_PACKAGE = "kubernetes"
DEB822_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
ONE_LINE_SOURCES = Path("/etc/apt/sources.list")

# Needed to run the stack (etcd, certificates) and to build the binaries once.
RUNTIME_PACKAGES = ("etcd-server", "openssl")
# Debian's reflect2 replaces the vendored 1.0.1, which crashes the apiserver under Go >= 1.18
# (a SIGSEGV in mapiterinit while it encodes custom resources; fixed upstream in 1.0.2).
BUILD_PACKAGES = ("golang-go", "rsync", "make", "dpkg-dev", "golang-github-modern-go-reflect2-dev")
REFLECT2 = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
# Part of the cache key: binaries built before this fix are never reused.
FLAVOR = "reflect2-1.0.2"


def apt_packages() -> list[str]:
    """Name the Debian packages the test control plane needs, to build and to run."""
    return [*RUNTIME_PACKAGES, *BUILD_PACKAGES]


def ensure_binaries() -> Path:
    """Return a directory holding kube-apiserver and kube-controller-manager, building once."""
    override = os.environ.get("BACKSTOP_KUBE_CACHE")
    root = Path(override) if override else _default_root()
    found = _cached(root, exact=bool(override))
    if found:
        return found
    root.mkdir(parents=True, exist_ok=True)
    with _build_lock(root):
        # Another process may have finished the build while this one waited for the lock.
        found = _cached(root, exact=bool(override))
        if found:
            return found
        ensure_packages(apt_packages())
        return _build(root, exact=bool(override))


def ensure_packages(packages: Sequence[str]) -> None:
    """Install the missing Debian packages when running as root, else name them in an error."""
    missing = [name for name in packages if not _installed(name)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(f"missing Debian packages: run `apt-get install -y {' '.join(missing)}`")
    _log(f"installing Debian packages: {' '.join(missing)}")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # A fresh machine may have no package lists yet.
    _run(["apt-get", "update"], env=apt_env)
    _run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=apt_env)


def _installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}", package], capture_output=True, text=True
    )
    return result.returncode == 0 and result.stdout.strip() == "installed"


def _default_root() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "backstop" / "kube"


def _complete(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in BINARIES)


def _cached(root: Path, *, exact: bool) -> Path | None:
    """Find finished binaries: in root itself when exact, else in the latest-built version dir."""
    if exact:
        return root if _complete(root) else None
    versions = [d for d in root.glob(f"[0-9]*+{FLAVOR}") if d.is_dir() and _complete(d)]
    return max(versions, key=lambda d: d.stat().st_mtime, default=None)


@contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    """Serialize builds between processes (parallel test sessions on one machine)."""
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build(root: Path, *, exact: bool) -> Path:
    """Fetch the source, build both binaries, and move them into the cache atomically."""
    started = time.monotonic()
    for stale in root.glob(".build-*"):  # left by a build that was killed
        shutil.rmtree(stale, ignore_errors=True)
    # Build next to the cache so the final renames stay on one filesystem.
    with tempfile.TemporaryDirectory(prefix=".build-", dir=root) as scratch:
        work = Path(scratch)
        tree, version = _fetch_source(work)
        _use_debian_reflect2(tree)
        _log(
            f"building {', '.join(BINARIES)} from {SOURCE_PACKAGE} {version} "
            f"(about 4 minutes and 2 GB, once)"
        )
        _make(tree, work / "make.log")
        target = root if exact else root / f"{version}+{FLAVOR}"
        target.mkdir(exist_ok=True)
        # One atomic rename per binary: a reader sees each binary whole or not at all.
        for name in BINARIES:
            os.replace((tree / "_output" / "bin" / name).resolve(), target / name)
    _log(f"built in {time.monotonic() - started:.0f} s: {target}")
    return target


def _use_debian_reflect2(tree: Path) -> None:
    """Swap the vendored modern-go/reflect2 for Debian's fixed copy (same import path)."""
    vendored = tree / "vendor" / "github.com" / "modern-go" / "reflect2"
    shutil.rmtree(vendored)
    shutil.copytree(REFLECT2, vendored)


def _fetch_source(work: Path) -> tuple[Path, str]:
    """Download and unpack the source package with a private deb-src list; return tree, version."""
    sources = work / "apt" / "sources.list.d"
    lists = work / "apt" / "lists"
    (lists / "partial").mkdir(parents=True)
    sources.mkdir(parents=True)
    _write_private_sources(sources)
    apt_options = [
        "-o",
        "Dir::Etc::SourceList=/dev/null",
        "-o",
        f"Dir::Etc::SourceParts={sources}",
        "-o",
        f"Dir::State::Lists={lists}",
        # No shared binary caches either: they would mix our lists into the system's view.
        "-o",
        "Dir::Cache::pkgcache=",
        "-o",
        "Dir::Cache::srcpkgcache=",
        # The _apt sandbox user cannot enter a cache under root's home.
        "-o",
        "APT::Sandbox::User=root",
    ]
    _log(f"fetching the {SOURCE_PACKAGE} source package")
    _run(["apt-get", *apt_options, "update"])
    source = work / "source"
    source.mkdir()
    _run(["apt-get", *apt_options, "source", "--only-source", SOURCE_PACKAGE], cwd=source)
    dsc = next(source.glob(f"{SOURCE_PACKAGE}_*.dsc"))
    version = re.search(r"^Version:\s*(\S+)", dsc.read_text(), re.MULTILINE).group(1)
    tree = next(d for d in source.iterdir() if d.is_dir())
    return tree, version


def _write_private_sources(directory: Path) -> None:
    """Copy the machine's Debian sources into directory with deb-src enabled."""
    if DEB822_SOURCES.exists():
        text = re.sub(
            r"^Types:\s*deb\s*$",
            "Types: deb deb-src",
            DEB822_SOURCES.read_text(),
            flags=re.MULTILINE,
        )
        (directory / "debian.sources").write_text(text)
    elif ONE_LINE_SOURCES.exists():
        # Installer-made machines still use the one-line format.
        lines = [
            line for line in ONE_LINE_SOURCES.read_text().splitlines() if line.startswith("deb ")
        ]
        text = "".join(f"{line}\ndeb-src {line[4:]}\n" for line in lines)
        (directory / "debian.list").write_text(text)
    else:
        raise StackError(f"no Debian apt sources in {DEB822_SOURCES} or {ONE_LINE_SOURCES}")


def _make(tree: Path, log_path: Path) -> None:
    """Run the upstream build, echoing its progress lines and keeping the full log."""
    env = {
        **os.environ,
        "GOPROXY": "off",  # everything is vendored; never reach for the network
        "GOFLAGS": "",  # a user's GOFLAGS (e.g. -mod=mod) must not leak into the build
        "GOENV": "off",  # nor their `go env -w` settings
        "CGO_ENABLED": "0",  # as Debian builds it: static binaries, no C compiler needed
        "HOME": str(tree.parent),  # keep go's stray caches inside the build tree
    }
    command = ["make", f"WHAT={' '.join('cmd/' + name for name in BINARIES)}"]
    with (
        open(log_path, "w") as log,
        subprocess.Popen(
            command,
            cwd=tree,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc,
    ):
        for line in proc.stdout:
            log.write(line)
            # Upstream marks steps with +++ / !!! and lists each step's targets indented.
            if line.startswith(("+++", "!!!", "    ")):
                _log(line.rstrip())
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise StackError(f"kubernetes build failed (exit {proc.returncode}):\n{tail}")


def _run(command: Sequence[str], cwd: Path | None = None, env: dict | None = None) -> None:
    """Run a command quietly; on failure raise StackError with the end of its output."""
    result = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise StackError(f"{' '.join(command[:3])} ... failed (exit {result.returncode}):\n{tail}")


def _log(message: str) -> None:
    print(f"[backstop kube] {message}", file=sys.stderr, flush=True)
