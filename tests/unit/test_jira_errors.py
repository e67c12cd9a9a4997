"""How the Jira integration reports failures: a timeout is its own kind (the request may
have been acted on, so an issue may exist), a refused connection is not."""

import socket

import pytest

from cli.localredis import free_port
from core.errors import TimedOut, TransientError
from core.integrations import jira
from core.integrations.jira import Tickets


def test_no_answer_in_time_is_timed_out(monkeypatch):
    monkeypatch.setattr(jira, "TIMEOUT", 0.3)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(TimedOut):
            Tickets(url=url, user="u", token="t").find_by_label(project="OPS", label="x")


def test_a_refused_connection_is_transient_but_not_timed_out(monkeypatch):
    monkeypatch.setattr(jira, "TIMEOUT", 0.3)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(TransientError) as raised:
        Tickets(url=url, user="u", token="t").find_by_label(project="OPS", label="x")
    assert not isinstance(raised.value, TimedOut)
