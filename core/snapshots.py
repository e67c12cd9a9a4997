"""A stored graph snapshot and the signed links that open one without logging in."""

import hashlib
import hmac
import re
from dataclasses import dataclass

MAX_BYTES = 2 * 1024 * 1024  # per snapshot: PNG + CSV + name + expr (the store refuses more)
_EXP = re.compile(r"[0-9]{1,12}")
_SIG = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Snapshot:
    """One graph (PNG) and its raw points (CSV); `error` says why data is missing or cut."""

    id: str
    name: str
    expr: str
    png: bytes
    csv: bytes
    points: int
    error: str = ""

    @property
    def size(self) -> int:
        """The bytes this snapshot takes in the store."""
        return len(self.png) + len(self.csv) + len(self.name.encode()) + len(self.expr.encode())


# -- signed links --------------------------------------------------------------------------


def sign(snapshot_id: str, *, secret: bytes, expires: int) -> str:
    """The query string of a link to `snapshot_id` valid until `expires` (unix seconds)."""
    if not secret:
        raise ValueError("an empty secret would let anyone sign links")
    return f"exp={expires}&sig={_signature(snapshot_id, str(expires), secret)}"


def verify_signature(snapshot_id: str, exp: str, sig: str, *, secret: bytes, now: float) -> bool:
    """True when `sig` signs `snapshot_id` until `exp` with `secret` and `exp` is after `now`."""
    if not secret or not _EXP.fullmatch(exp or "") or not _SIG.fullmatch(sig or ""):
        return False
    if int(exp) <= now:
        return False
    return hmac.compare_digest(_signature(snapshot_id, exp, secret), sig)


def _signature(snapshot_id: str, exp: str, secret: bytes) -> str:
    return hmac.new(secret, f"{snapshot_id}:{exp}".encode(), hashlib.sha256).hexdigest()
