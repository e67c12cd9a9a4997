"""The JSON API under /api/v1, behind the API bearer token."""

from flask import Blueprint, jsonify, request

from receiver import auth
from receiver.errors import ApiError
from receiver.state import app_state

bp = Blueprint("api", __name__, url_prefix="/api/v1")

STATUSES = ("firing", "resolved")
MAX_LIMIT = 1000


@bp.before_request
def authenticate() -> None:
    """Every API route needs the API token."""
    auth.require_api_auth(request, app_state().settings)


def query_limit(default: int = 50) -> int:
    """The `limit` query parameter, 1..MAX_LIMIT."""
    raw = request.args.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, "invalid_query", f"limit: must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def query_choice(name: str, choices: tuple[str, ...]) -> str | None:
    """An optional query parameter restricted to `choices`."""
    value = request.args.get(name)
    if value is not None and value not in choices:
        raise ApiError(400, "invalid_query", f"{name}: must be one of {', '.join(choices)}")
    return value


@bp.get("/alerts")
def alerts():
    """Recent alert episodes, most recently active first."""
    status = query_choice("status", STATUSES)
    limit = query_limit()
    episodes = app_state().store.episodes.recent_episodes(status=status, limit=limit)
    return jsonify({"alerts": [episode.to_json() for episode in episodes]})
