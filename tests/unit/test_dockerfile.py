"""The Dockerfile and .dockerignore, linted by reading them (no Docker engine runs here):
pinned base images, a non-root user before the entrypoint, no remote ADD, only the
product packages and the runtime requirements in the image."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PRODUCT = {"config", "core", "receiver", "workers", "cli"}
BUILD_INPUTS = {"requirements.txt", "pyproject.toml", "README.md"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), comments dropped and continuation lines joined."""
    result, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        pending = ""
        result.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return result


def stages() -> list[tuple[list[str], list[tuple[str, str]]]]:
    """Each stage's FROM arguments and its instructions."""
    result = []
    for keyword, arguments in instructions():
        if keyword == "FROM":
            result.append((arguments.split(), []))
        else:
            assert result, f"{keyword} before the first FROM"
            result[-1][1].append((keyword, arguments))
    return result


def copy_sources(arguments: str) -> list[str]:
    """The context paths a COPY reads (none when it copies from a stage)."""
    words = arguments.split()
    if any(word.startswith("--from") for word in words):
        return []
    paths = [word for word in words if not word.startswith("--")]
    return [path.removeprefix("./").rstrip("/") for path in paths[:-1]]


def ignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path, or a directory above it, decides."""
    verdict = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        regex = _regex(pattern.lstrip("!").strip("/"))
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            verdict = not keep
    return verdict


def _regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def test_base_images_are_pinned_tags():
    names = set()
    for arguments, _ in stages():
        image = next(word for word in arguments if not word.startswith("--"))
        if len(arguments) >= 3 and arguments[-2].upper() == "AS":
            names.add(arguments[-1])
        if image in names:
            continue
        repository, _, tag = image.rpartition("/")[2].partition(":")
        assert tag and tag != "latest", image
        # Python 3.11 (pyproject), Debian bookworm (the Debian the project is tested on).
        assert repository == "python" and re.fullmatch(r"3\.11(\.\d+)?-slim-bookworm", tag), image


def test_final_stage_runs_as_a_non_root_user_before_the_entrypoint():
    final = stages()[-1][1]
    keywords = [keyword for keyword, _ in final]
    assert "ENTRYPOINT" in keywords and "USER" in keywords
    entrypoint = keywords.index("ENTRYPOINT")
    users = [arguments for keyword, arguments in final[:entrypoint] if keyword == "USER"]
    assert users, "no USER before ENTRYPOINT"
    user = users[-1].split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can check it; deploy/ runs it as 10001.
    assert user.isdigit() and int(user) != 0
    assert "USER" not in keywords[entrypoint:]


def test_entrypoint_is_backstop_with_no_default_command():
    final = dict(stages()[-1][1])
    assert json.loads(final["ENTRYPOINT"]) == ["backstop"]
    assert "CMD" not in final  # `backstop run` starts a local Redis: never a default


def test_no_add_from_urls():
    for keyword, arguments in instructions():
        if keyword == "ADD":
            assert not re.search(r"(://|^git@|\sgit@)", arguments), arguments


def test_copies_only_the_product_and_its_build_inputs():
    sources = [
        path
        for keyword, arguments in instructions()
        if keyword == "COPY"
        for path in copy_sources(arguments)
    ]
    assert "requirements.txt" in sources
    assert set(sources) >= PRODUCT
    for path in sources:
        assert path in BUILD_INPUTS or path.split("/")[0] in PRODUCT, path
        assert not ignored(path), f"{path} is copied but excluded by .dockerignore"


def test_installs_only_the_runtime_requirements():
    text = " ".join(arguments for _, arguments in instructions())
    assert "requirements-dev" not in text
    dev = (ROOT / "requirements-dev.txt").read_text().splitlines()
    dev_packages = {
        re.split(r"[=<>\[ ]", line, maxsplit=1)[0].lower()
        for line in dev
        if line.strip() and not line.startswith(("#", "-"))
    }
    assert dev_packages and not any(re.search(rf"\b{p}\b", text.lower()) for p in dev_packages)
    installs = [a for k, a in stages()[-1][1] if k == "RUN" and "pip install" in a]
    assert installs and all("--no-index" in a for a in installs)  # the builder's wheels only


def test_dockerignore_keeps_everything_but_the_product_out():
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        "var/redis/dump.rdb",
        "tests/unit/test_config.py",
        "testbed/kube/kube.py",
        "gameday/scenarios.py",
        "bench/ingest.py",
        "docs/operations.md",
        "deploy/base/receiver.yaml",
        "receiver/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/CACHEDIR.TAG",
        "backstop.egg-info/PKG-INFO",
    ):
        assert ignored(path), path
    for path in (
        "requirements.txt",
        "pyproject.toml",
        "README.md",
        "config/backstop.yaml",
        "receiver/app.py",
        "receiver/templates/base.html",
        "core/store/claim.lua",
    ):
        assert not ignored(path), path
