"""The Redis store: the only package that knows Backstop's key names (see keys.py).

`Store` bundles one sub-store per record type. Redis errors propagate
(redis.exceptions.RedisError); the receiver maps them to 503, jobs retry.

Backstop's clients never set decode_responses, so Redis replies are bytes; redis-py types
them for either mode (`bytes | str`, one union for ZRANGE with and without scores), and the
sub-stores cast them to what that contract makes them.
"""

import redis
from redis.commands.core import Script

from config.policy import Policy
from core.store.automation import AutomationStore
from core.store.chat import ChatStore
from core.store.decisions import DecisionStore
from core.store.episodes import (
    DUPLICATE,
    FIRST_RESOLVED,
    NEW_FIRING,
    RESEND,
    UNDECIDED,
    Episode,
    EpisodeStore,
)
from core.store.freezes import FreezeStore
from core.store.incidents import IncidentStore
from core.store.pages import PageStore
from core.store.quarantine import QuarantineStore
from core.store.rollbacks import RollbackStore
from core.store.rollouts import RolloutStore
from core.store.sessions import SessionStore
from core.store.snapshots import SnapshotStore

__all__ = ["DUPLICATE", "FIRST_RESOLVED", "NEW_FIRING", "RESEND", "UNDECIDED", "Episode", "Store"]


class Store:
    """Backstop's records in Redis."""

    def __init__(self, client: redis.Redis, policy: Policy):
        self.redis = client
        self.episodes = EpisodeStore(client, policy.intake)
        self.rollouts = RolloutStore(client)
        self.decisions = DecisionStore(client)
        self.automation = AutomationStore(client)
        self.rollbacks = RollbackStore(client)
        self.incidents = IncidentStore(client)
        self.pages = PageStore(client)
        self.snapshots = SnapshotStore(client)
        self.sessions = SessionStore(client)
        self.freezes = FreezeStore(client)
        self.quarantine = QuarantineStore(client)
        self.chat = ChatStore(client)

    def ping(self) -> bool:
        """True when Redis answers."""
        return bool(self.redis.ping())

    def scripts(self) -> list[Script]:
        """Every Lua script of the store's parts."""
        return [
            value
            for part in vars(self).values()
            if hasattr(part, "__dict__")
            for value in vars(part).values()
            if isinstance(value, Script)
        ]

    def warm(self) -> None:
        """Connect and load every Lua script of the store now, so that a process's first
        webhook pays for neither (about 5 ms: the connection, and a NOSCRIPT round trip per
        script; measured in bench/storm.py). Redis errors propagate."""
        self.redis.ping()
        for script in self.scripts():
            self.redis.script_load(script.script)
