"""What a running app holds: settings, policy and the store, kept in app.extensions."""

from dataclasses import dataclass

from flask import current_app

from config.policy import Policy
from config.settings import Settings
from config.users import Users
from core.decisions import Engine
from core.store import Store

EXTENSION = "backstop"


@dataclass(frozen=True)
class AppState:
    """The app's long-lived objects, created once by create_app()."""

    settings: Settings
    policy: Policy
    store: Store
    engine: Engine
    users: Users


def app_state() -> AppState:
    """The state of the app handling the current request."""
    return current_app.extensions[EXTENSION]
