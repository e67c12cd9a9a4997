"""Every Redis key Backstop uses, in one place. All start with `backstop:`."""

PREFIX = "backstop:"

# Alert episodes (intake).
EPISODE = PREFIX + "episode:"  # + episode id -> hash of the episode's latest state
EPISODES = PREFIX + "episodes"  # zset: episode id -> last activity (ms)
EVENTS = PREFIX + "events"  # stream of accepted alert events
FLUSH = PREFIX + "flush:"  # + token of a write-behind flush that was applied (expiring)

# Deployment history.
ROLLOUT = PREFIX + "rollout:"  # + rollout id -> JSON record
ROLLOUTS = PREFIX + "rollouts"  # zset: rollout id -> started_at (ms), every workload
WORKLOAD_ROLLOUTS = PREFIX + "rollouts:"  # + workload key -> zset: rollout id -> started_at
WORKLOAD_REVISIONS = PREFIX + "revisions:"  # + workload key -> hash: revision -> rollout id
WATCHER_HEARTBEAT = PREFIX + "watcher-heartbeat"  # ms of the watcher's latest sign of life
EXPECTED_ROLLBACK = PREFIX + "expected-rollback:"  # + workload key -> hash: what Backstop applies

# Decisions.
DECISION = PREFIX + "decision:"  # + decision id (= episode id) -> JSON record
DECISIONS = PREFIX + "decisions"  # zset: decision id -> created (ms)
DECISIONS_BY_OUTCOME = PREFIX + "decisions:outcome:"  # + outcome -> zset: id -> created (ms)
DECISIONS_BY_WORKLOAD = PREFIX + "decisions:workload:"  # + workload key -> zset: id -> created
# Set once every decision stored before the per-workload indexes existed is in them.
DECISIONS_WORKLOAD_INDEXED = PREFIX + "decisions:workload-indexed"

# Rollbacks.
ROLLBACK = PREFIX + "rollback:"  # + rollback id (the RQ job id) -> JSON record
ROLLBACKS = PREFIX + "rollbacks"  # zset: rollback id -> created (ms)
ROLLBACKS_BY_STATUS = PREFIX + "rollbacks:status:"  # + status -> zset: id -> created (ms)
EVIDENCE = PREFIX + "evidence:"  # + rollback id -> JSON: pod logs and events
INCIDENT = PREFIX + "incident:"  # + incident id -> JSON: the incident and its delivery
INCIDENTS = PREFIX + "incidents"  # zset: incident id -> created (ms)
JIRA_ISSUE = PREFIX + "jira-issue:"  # + incident key -> Jira issue key
LOCK = PREFIX + "lock:"  # + workload key -> token of the rollback holding the workload
PAGE = PREFIX + "page:"  # + page group -> hash: first, last decision id, count (expiring)
PAGES_OPENED = PREFIX + "pages-opened:"  # + window bucket -> page groups opened (expiring)

# Metric snapshots (graphs for incidents).
SNAPSHOT = PREFIX + "snapshot:"  # + snapshot id -> hash: png, csv, name, expr, points, error

# Automation state: pauses, cooldowns, circuit breaker, rollback claims, audit.
PAUSE_GLOBAL = PREFIX + "pause"  # hash: by, reason, at
PAUSE_WORKLOAD = PREFIX + "pause:"  # + workload key -> hash: by, reason, at
PAUSED_WORKLOADS = PREFIX + "paused-workloads"  # set of workload keys
LAST_ROLLBACK = PREFIX + "last-rollback:"  # + workload key -> ms of the last claimed rollback
CLAIM = PREFIX + "claim:"  # + workload key + ":" + revision -> decision id
CIRCUIT = PREFIX + "circuit"  # hash: state, opened_at, reason, reset_by, reset_at
ROLLBACK_TIMES = PREFIX + "rollback-times"  # zset: decision id -> claimed at (ms)
AUDIT = PREFIX + "audit"  # stream of audit entries
FREEZE = PREFIX + "freeze:"  # + freeze id -> JSON: an owner Backstop froze (FrozenOwner)
FREEZES = PREFIX + "freezes"  # zset: freeze id -> frozen at (ms)
FREEZES_ACTIVE = PREFIX + "freezes:active"  # set of the ids of freezes not yet ended
QUARANTINE = PREFIX + "quarantine:"  # + rollback id -> JSON: a quarantined revision
QUARANTINES = PREFIX + "quarantines"  # zset: rollback id -> quarantined at (ms)
QUARANTINES_ACTIVE = PREFIX + "quarantines:active"  # set of the ids not yet released
FREEZE_REVIEW_LOCK = PREFIX + "freeze-review-lock"  # token of the review running now (expiring)
CHAT = PREFIX + "chat:"  # + rollback id -> hash: per chat target, its message and deliveries
CHAT_LOCK = PREFIX + "chat-lock:"  # + rollback id:target -> token of the delivery at work

# Dashboard sessions and login throttling.
SESSION = PREFIX + "session:"  # + sha256(session id) -> JSON: user, role, csrf (expiring)
LOGIN_FAILURES = PREFIX + "login-failures:"  # + who -> count of recent failed logins


def workload_rollouts(workload_key: str) -> str:
    """The rollouts of one workload, by start time."""
    return WORKLOAD_ROLLOUTS + workload_key


def workload_revisions(workload_key: str) -> str:
    """Revision -> rollout id for one workload."""
    return WORKLOAD_REVISIONS + workload_key


def decisions_with(outcome: str) -> str:
    """The decisions whose current outcome is `outcome`, by creation time."""
    return DECISIONS_BY_OUTCOME + outcome


def decisions_about(workload_key: str) -> str:
    """The decisions that blamed or named one workload, by creation time."""
    return DECISIONS_BY_WORKLOAD + workload_key


def rollbacks_with(status: str) -> str:
    """The rollbacks whose current status is `status`, by creation time."""
    return ROLLBACKS_BY_STATUS + status


def claim(workload_key: str, revision: str) -> str:
    """The claim that one bad revision of one workload is (being) rolled back."""
    return f"{CLAIM}{workload_key}:{revision}"
