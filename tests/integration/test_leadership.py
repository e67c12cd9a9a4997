"""Leader election on a real Lease: one holder at a time, takeover after expiry, handover
on release; and `lead` runs the work only while holding the Lease."""

import threading
from datetime import timedelta

import pytest

from core.integrations.lease import Lease
from core.records import utcnow
from tests.conftest import wait_for
from workers.leadership import lead

pytestmark = pytest.mark.integration

DURATION = timedelta(seconds=2)


@pytest.fixture
def candidate(kube, kube_namespace):
    apis = []

    def make(identity: str) -> Lease:
        api = kube.api_client()
        apis.append(api)
        return Lease(api, kube_namespace, "watcher", identity, duration=DURATION, clock=utcnow)

    yield make
    for api in apis:
        api.close()


def test_one_holder_takeover_after_expiry_and_handover_on_release(candidate):
    first, second = candidate("first"), candidate("second")
    assert first.acquire_or_renew() and first.acquire_or_renew()  # created, then renewed
    assert not second.acquire_or_renew()
    # `first` stops renewing (its process died): `second` takes over once the Lease expired.
    wait_for(second.acquire_or_renew, timeout=10, message="takeover after expiry")
    assert not first.acquire_or_renew()
    lease = second.coordination.read_namespaced_lease("watcher", second.namespace)
    assert lease.spec.holder_identity == "second" and lease.spec.lease_transitions == 1
    second.release()
    assert first.acquire_or_renew()  # released: no need to wait for the expiry


def test_lead_runs_the_work_on_exactly_one_candidate_and_fails_over(candidate):
    running: set[str] = set()
    overlaps: list[set[str]] = []
    lock = threading.Lock()

    def work_for(name: str):
        def work(halt: threading.Event) -> None:
            with lock:
                running.add(name)
                if len(running) > 1:
                    overlaps.append(set(running))
            halt.wait()
            with lock:
                running.discard(name)

        return work

    stops = {name: threading.Event() for name in ("a", "b")}
    threads = {
        name: threading.Thread(
            target=lead, args=(candidate(name), stops[name], work_for(name)), daemon=True
        )
        for name in stops
    }
    for thread in threads.values():
        thread.start()
    try:
        leader = wait_for(lambda: next(iter(running), None), timeout=10, message="a leader")
        other = "b" if leader == "a" else "a"
        stops[leader].set()  # the leader shuts down and releases the Lease
        threads[leader].join(timeout=10)
        wait_for(lambda: running == {other}, timeout=10, message="failover")
        assert overlaps == []
    finally:
        for stop in stops.values():
            stop.set()
        for thread in threads.values():
            thread.join(timeout=10)
