"""Metric snapshots as files: `/snapshots/<id>.png` and `.csv`.

Readable with the API token or a dashboard session, or through a signed, expiring link
(`?exp=&sig=`), which is what PagerDuty's image links and a Jira ticket's readers use.
"""

import time

from flask import Blueprint, Response, request

from core.snapshots import verify_signature
from receiver import access
from receiver.errors import ApiError
from receiver.queries import SnapshotQuery, parse_query
from receiver.state import app_state

bp = Blueprint("snapshots", __name__)
TYPES = {"png": "image/png", "csv": "text/csv; charset=utf-8"}


@bp.get("/snapshots/<snapshot_id>.<ext>")
def snapshot(snapshot_id: str, ext: str):
    """A snapshot's graph or data."""
    state = app_state()
    if ext not in TYPES:
        raise ApiError(404, "not_found", "snapshots are .png or .csv")
    query = parse_query(SnapshotQuery)
    if query.sig is not None:
        valid = verify_signature(
            snapshot_id,
            query.exp or "",
            query.sig,
            secret=state.settings.snapshot_key(),
            now=time.time(),
        )
        if not valid:
            raise ApiError(403, "forbidden", "invalid or expired snapshot link")
    else:
        access.authenticate(request, state)
    store = state.store.snapshots
    data = store.png(snapshot_id) if ext == "png" else store.csv(snapshot_id)
    if data is None:
        raise ApiError(404, "not_found", f"no snapshot {snapshot_id}")
    response = Response(data, mimetype=TYPES[ext])
    response.headers["Cache-Control"] = "private, max-age=300"
    return response
