"""Named points where reliability tests kill the process: in the rollback (after_lock,
after_evidence, after_patch, during_wait, during_verification), the receiver's decision
(after_claim) and the incident job (after_jira_create, after_jira_attach,
after_pagerduty_trigger). Inert in production.

A test sets BACKSTOP_TESTPOINT_KILL=<name> and BACKSTOP_TESTPOINT_ONCE=<path>: the first
process to reach that point creates the file and SIGKILLs itself, as a crashing node would.
Without both variables, `reached` does nothing.
"""

import os
import signal


def reached(name: str) -> None:
    """Die here if a test asked for it (once), else return at once."""
    if os.environ.get("BACKSTOP_TESTPOINT_KILL") != name:
        return
    marker = os.environ.get("BACKSTOP_TESTPOINT_ONCE")
    if not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
