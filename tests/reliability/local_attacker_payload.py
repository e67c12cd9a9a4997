"""What a hostile local user's job would run: a module that leaves a mark when it is
imported and when its function runs (tests/reliability/test_local_attacker.py).

The marks go to the path in $LOCAL_ATTACKER_MARK, so a test can prove a worker never
imported this module nor ran its function."""

import os
from pathlib import Path

_MARK = os.environ.get("LOCAL_ATTACKER_MARK")
if _MARK:
    Path(_MARK + ".imported").touch()


def touch(*_args, **_kwargs) -> None:
    """Leave the 'ran' mark (callable as a job or as any RQ callback)."""
    if _MARK:
        Path(_MARK + ".ran").touch()


class Unpickled:
    """Runs `touch <path>` through os.system when unpickled: a pickle payload."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))
