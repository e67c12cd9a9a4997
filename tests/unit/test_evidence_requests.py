"""How evidence capture spends its requests (workers.evidence.gather): one after another
while they are quick, side by side once one is slow, errors in request order; and the
namespace's events, read alongside the pods (workers.evidence.capture)."""

import threading
import time

import pytest

from core.integrations.kubeconfig import CONCURRENT_REQUESTS
from core.models import Workload
from workers import evidence

SLOW = 0.05  # the threshold in these tests; "slow" calls sleep three times as long


@pytest.fixture(autouse=True)
def threshold(monkeypatch):
    monkeypatch.setattr(evidence, "SLOW_REQUEST", SLOW)


class Calls:
    """Recorded calls: which thread ran each, and how many ran at once at most."""

    def __init__(self):
        self.threads: list[int] = []
        self.active = 0
        self.most = 0
        self.together = threading.Event()  # set once two calls run at the same time
        self._lock = threading.Lock()

    def call(self, value, *, sleep: float = 0.0, wait_for_company: bool = False, error=None):
        """A request: returns `value` (or raises `error`) after `sleep` seconds; with
        `wait_for_company`, first waits (up to 5 s) for another call to run alongside."""

        def run():
            with self._lock:
                self.threads.append(threading.get_ident())
                self.active += 1
                self.most = max(self.most, self.active)
                if self.active > 1:
                    self.together.set()
            try:
                if wait_for_company:
                    self.together.wait(5)
                time.sleep(sleep)
                if error is not None:
                    raise error
                return value
            finally:
                with self._lock:
                    self.active -= 1

        return run


def test_quick_requests_run_one_after_another_in_the_calling_thread():
    calls = Calls()
    results = evidence.gather([calls.call(n) for n in range(6)])
    assert results == list(range(6))
    assert set(calls.threads) == {threading.get_ident()}
    assert calls.most == 1


def test_after_a_slow_request_the_rest_run_side_by_side_within_the_bound():
    calls = Calls()
    rest = [calls.call(n, wait_for_company=True) for n in range(1, 9)]
    results = evidence.gather([calls.call(0, sleep=3 * SLOW), *rest])
    assert results == list(range(9))  # in the order asked, whatever order they finished in
    assert 1 < calls.most <= CONCURRENT_REQUESTS
    assert calls.threads[0] == threading.get_ident()


def test_a_slow_last_request_starts_no_thread():
    calls = Calls()
    assert evidence.gather([calls.call("a"), calls.call("b", sleep=3 * SLOW)]) == ["a", "b"]
    assert set(calls.threads) == {threading.get_ident()}


def test_the_error_raised_is_the_first_in_request_order():
    calls = Calls()
    second = RuntimeError("second")
    third = RuntimeError("third")  # fails first in time, but comes later in order
    sequence = [
        calls.call(0, sleep=3 * SLOW),
        calls.call(1, sleep=SLOW, error=second),
        calls.call(2, error=third),
        calls.call(3),
    ]
    with pytest.raises(RuntimeError, match="second"):
        evidence.gather(sequence)


def test_a_quick_failing_request_stops_the_ones_after_it():
    calls = Calls()
    with pytest.raises(ValueError, match="boom"):
        evidence.gather([calls.call(0), calls.call(1, error=ValueError("boom")), calls.call(2)])
    assert len(calls.threads) == 2  # the third was never made


class SlowEventsKube:
    """Backstop's Kube interface as capture() uses it: one pod, quick reads, and a
    namespace event list the API server takes `events_delay` seconds to serve."""

    def __init__(self, events_delay: float, pods_error: Exception | None = None):
        self.events_delay, self.pods_error = events_delay, pods_error
        self.events_started = threading.Event()
        self.overlapped = False  # the pods were read while the events were being served
        self.events_calls = 0

    def pods(self, namespace, labels):
        self.overlapped = self.events_started.wait(5)
        if self.pods_error is not None:
            raise self.pods_error
        pod = {
            "metadata": {"name": "checkout-abc-1", "creationTimestamp": "2026-12-01T10:00:00Z"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running"},
        }
        return [pod]

    def log(self, namespace, pod, container, **_):
        return f"{pod}/{container}"

    def events_page(self, namespace, size):
        self.events_calls += 1
        self.events_started.set()
        time.sleep(self.events_delay)
        if self.pods_error is not None:
            raise RuntimeError("events failed too")
        about = {"kind": "Pod", "name": "checkout-abc-1"}
        return [{"involvedObject": about, "reason": "BackOff", "lastTimestamp": "t1"}]


DEPLOYMENT = Workload("default", "shop", "Deployment", "checkout")
OWNER = {"spec": {"selector": {"matchLabels": {"app": "checkout"}}}}
BAD = {"metadata": {"name": "checkout-abc", "labels": {"pod-template-hash": "abc"}}}


def test_the_namespace_events_are_read_while_the_pods_are():
    kube = SlowEventsKube(events_delay=0.2)
    found = evidence.capture(kube, DEPLOYMENT, OWNER, BAD)
    assert kube.overlapped
    assert found["selector"] == {"app": "checkout", "pod-template-hash": "abc"}
    [pod] = found["pods"]
    assert pod["logs"] == {
        "app": {"current": "checkout-abc-1/app", "previous": "checkout-abc-1/app"}
    }
    assert [e["reason"] for e in found["events"]] == ["BackOff"]


def test_a_pods_error_comes_before_an_events_error():
    kube = SlowEventsKube(events_delay=0.05, pods_error=ValueError("pods failed"))
    with pytest.raises(ValueError, match="pods failed"):
        evidence.capture(kube, DEPLOYMENT, OWNER, BAD)


def test_events_read_ahead_while_pre_flight_runs_serve_the_capture():
    kube = SlowEventsKube(events_delay=0.05)
    with evidence.events_read_ahead(kube, "shop") as page:
        assert kube.events_started.wait(5)  # asked for while the block (pre-flight) runs
        found = evidence.capture(kube, DEPLOYMENT, OWNER, BAD, page)
    assert kube.events_calls == 1  # the capture used the page read ahead
    assert [e["reason"] for e in found["events"]] == ["BackOff"]
    with evidence.events_read_ahead(kube, "shop", wanted=False) as page:
        assert page is None  # evidence captured by an earlier attempt: nothing to read
    assert kube.events_calls == 1
