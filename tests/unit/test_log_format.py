"""Log lines: JSON for collectors, text for a person at `make run`'s terminal."""

import io
import json
import logging

import pytest

from cli.main import local_environment
from core import logs


def render(formatter: logging.Formatter, message: str, **fields) -> str:
    record = logging.LogRecord("backstop.decisions", logging.INFO, __file__, 1, message, (), None)
    record.fields = fields
    with logs.bound(request_id="req1"):
        return formatter.format(record)


def test_text_lines_carry_what_json_lines_carry():
    fields = {"decision_id": "d1", "outcome": "skipped", "workload": "shop/checkout"}
    as_json = json.loads(render(logs.JsonFormatter(), "decision skipped: paused", **fields))
    text = render(logs.TextFormatter(), "decision skipped: paused", **fields)
    assert text.startswith(as_json["time"][11:19] + " info ")
    assert "backstop.decisions  decision skipped: paused" in text
    for key, value in {**fields, "request_id": "req1"}.items():
        assert f"{key}={value}" in text


def test_text_lines_cannot_be_split_by_values_from_outside():
    text = render(logs.TextFormatter(), "alert\nfake line", alertname="a\r\nb c")
    assert "\n" not in text and "\r" not in text
    assert 'alertname="a\\r\\nb c"' in text
    assert "alert\\nfake line" in text


@pytest.mark.parametrize("tty, expected", [(True, "text"), (False, "json")])
def test_make_run_picks_text_on_a_terminal(tmp_path, monkeypatch, tty, expected):
    stdout = io.StringIO()
    stdout.isatty = lambda: tty
    monkeypatch.setattr("sys.stdout", stdout)
    assert local_environment(tmp_path, insecure=True)["BACKSTOP_LOG_FORMAT"] == expected


def test_an_explicit_format_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKSTOP_LOG_FORMAT", "json")
    stdout = io.StringIO()
    stdout.isatty = lambda: True
    monkeypatch.setattr("sys.stdout", stdout)
    assert local_environment(tmp_path, insecure=True)["BACKSTOP_LOG_FORMAT"] == "json"


def test_configure_logging_uses_the_format(monkeypatch):
    logger = logging.getLogger("backstop")
    monkeypatch.setattr(logger, "handlers", [])
    logs.configure_logging("INFO", "text")
    assert isinstance(logger.handlers[0].formatter, logs.TextFormatter)
