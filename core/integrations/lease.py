"""A Kubernetes Lease (coordination.k8s.io/v1) as one leader-election candidate sees it.

The holder renews the Lease every `duration / 3`; a candidate takes it over only once it
has not been renewed for `duration`. Every write carries the Lease's resourceVersion, so
two candidates racing for an expired Lease cannot both win (the loser gets 409).
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from kubernetes import client

log = logging.getLogger("backstop.leadership")


class Lease:
    """One candidate's view of a named Lease."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration: timedelta,
        clock: Callable[[], datetime],
    ):
        self.coordination = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration, self.clock = duration, clock

    def acquire_or_renew(self) -> bool:
        """True when this candidate holds the Lease now (taken, renewed, or created)."""
        now = self.clock()
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
        except client.ApiException as error:
            if error.status != 404:
                raise
            return self._create(now)
        spec = lease.spec
        assert spec is not None, "a Lease candidates write always has a spec (_create)"
        if spec.holder_identity == self.identity:
            spec.renew_time = now
            return self._replace(lease)
        renewed = spec.renew_time or spec.acquire_time
        seconds = spec.lease_duration_seconds or int(self.duration.total_seconds())
        if spec.holder_identity and renewed and renewed + timedelta(seconds=seconds) > now:
            return False  # held, and fresh
        log.info("taking over lease %s from %s", self.name, spec.holder_identity or "nobody")
        spec.holder_identity = self.identity
        spec.acquire_time = spec.renew_time = now
        spec.lease_duration_seconds = int(self.duration.total_seconds())
        spec.lease_transitions = (spec.lease_transitions or 0) + 1
        return self._replace(lease)

    def release(self) -> None:
        """Give the Lease up at once (on shutdown), if we hold it."""
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
        except client.ApiException:
            return
        spec = lease.spec
        assert spec is not None, "a Lease candidates write always has a spec (_create)"
        if spec.holder_identity == self.identity:
            spec.holder_identity = None
            self._replace(lease)

    def _create(self, now: datetime) -> bool:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                acquire_time=now,
                renew_time=now,
                lease_duration_seconds=int(self.duration.total_seconds()),
                lease_transitions=0,
            ),
        )
        try:
            self.coordination.create_namespaced_lease(self.namespace, body)
        except client.ApiException as error:
            if error.status == 409:
                return False  # another candidate created it first
            raise
        return True

    def _replace(self, lease: client.V1Lease) -> bool:
        try:
            self.coordination.replace_namespaced_lease(self.name, self.namespace, lease)
        except client.ApiException as error:
            if error.status == 409:
                return False  # someone wrote it since we read it
            raise
        return True
