"""Leader election on a Kubernetes Lease (core/integrations/lease.py), so that several
watcher replicas can run and exactly one watches at a time."""

import logging
import threading
from collections.abc import Callable

from core.integrations.lease import Lease

log = logging.getLogger("backstop.leadership")


def lead(lease: Lease, stop: threading.Event, work: Callable[[threading.Event], None]) -> None:
    """Run `work(its_stop)` while this candidate holds the Lease, until `stop` is set.

    Losing the Lease (or failing to renew it before it would expire) stops the work; the
    Lease is released on the way out so another replica takes over at once.
    """
    period = lease.duration.total_seconds() / 3
    working: tuple[threading.Thread, threading.Event] | None = None
    try:
        while not stop.is_set():
            try:
                leading = lease.acquire_or_renew()
            except Exception as exc:  # the API is unreachable: we cannot vouch for the Lease
                log.warning("lease %s: %s", lease.name, exc)
                leading = False
            if leading and working is None:
                log.info("leading: %s holds lease %s", lease.identity, lease.name)
                halt = threading.Event()
                thread = threading.Thread(target=work, args=(halt,), daemon=True)
                thread.start()
                working = (thread, halt)
            elif not leading and working is not None:
                log.warning("lost lease %s: stopping", lease.name)
                _halt(working)
                working = None
            stop.wait(period)
    finally:
        if working is not None:
            _halt(working)
            lease.release()


def _halt(working: tuple[threading.Thread, threading.Event]) -> None:
    thread, halt = working
    halt.set()
    thread.join()
