"""RQ job entry points. Thin: each loads the process context and calls the engine.

The contracts (job ids, arguments) are defined in workers/queues.py.
"""

from workers.context import process_context


def recheck(episode_id: str) -> dict:
    """Re-evaluate a deferred episode now that it has fired for min_firing."""
    decision = process_context().engine.recheck(episode_id)
    if decision is None:
        return {"episode_id": episode_id, "outcome": None, "reason": "no deferred decision"}
    return decision.summary()
