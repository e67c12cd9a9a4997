"""bench/store.py's pure parts: the alerts it ingests and the default install's projection."""

from bench import store


def test_webhooks_carry_fresh_alerts_one_in_ten_a_kill_switch():
    first, second = store.webhook(0), store.webhook(10)
    episodes = {event.episode_id for event in first + second}
    assert len(first) == store.PER_WEBHOOK and len(episodes) == 2 * store.PER_WEBHOOK
    kill_switches = [e for e in first if e.labels.get("backstop_rollback") == "true"]
    assert len(kill_switches) == 1


def test_projection_adds_each_capped_kind_at_its_cap():
    caps = {
        "max_decisions": 10,
        "max_episodes": 10,
        "max_rollbacks": 2,
        "max_incidents": 3,
        "audit_max": 4,
    }
    week = {
        "decision": {"mean_bytes": 150},
        "episode": {"mean_bytes": 90},  # smaller than the full store's: adds nothing
        "rollback": {"mean_bytes": 1_000},
        "evidence": {"mean_bytes": 9_000},
        "incident": {"mean_bytes": 100},
        "audit_entry": {"mean_bytes": 10},
        "rollout": {"mean_bytes": 0},
    }
    full = {"decision": {"mean_bytes": 100}, "episode": {"mean_bytes": 100}}
    found = store.projection(2**20, caps, week, full)
    expected = 2**20 + 50 * 10 + 2 * 10_000 + 3 * 100 + 4 * 10
    assert found["total_mb"] == expected / 2**20
    assert found["parts_mb"]["episodes_as_large_as_the_week_mix"] == 0
