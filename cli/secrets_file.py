"""Credentials generated on first start and kept under var/ with mode 0600."""

import os
import secrets
from pathlib import Path


def ensure_secret(path: Path) -> str:
    """Return the secret stored at `path`, creating a random one (mode 0600) if absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        value = secrets.token_urlsafe(32)
        handle.write(value + "\n")
    return value
