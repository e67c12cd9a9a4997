"""Durations, settings, the policy file and `backstop check-config`."""

from datetime import timedelta
from pathlib import Path

import pytest

from cli.main import main
from config.durations import format_duration, parse_duration
from config.policy import Policy, PolicyError, load_policy
from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("2m", 120),
        ("1h30m", 5400),
        ("7d", 604800),
        ("1.5s", 1.5),
        (45, 45),
        ("250ms", 0.25),
        ("1w", 604800),
    ],
)
def test_durations_parse(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "5", "5 minutes", "m5", -1, True, None, [1]])
def test_bad_durations_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("text", ["2m", "1h30m", "7d", "1d2h3m4s", "0s", "1.5s"])
def test_durations_round_trip(text):
    assert format_duration(parse_duration(text)) == text


def test_the_default_policy_is_valid_and_dry_run():
    policy = load_policy(ROOT / "config/backstop.yaml")
    assert policy == Policy()
    assert policy.mode == "dry-run"


def test_an_empty_policy_file_means_defaults(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("# nothing\n")
    assert load_policy(path) == Policy()


def test_policy_errors_name_the_file_and_each_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("mode: yolo\nintake:\n  episode_ttl: soon\n  typo: 1\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    text = str(caught.value)
    assert str(path) in text
    assert {p.path for p in caught.value.problems} == {"mode", "intake.episode_ttl", "intake.typo"}


@pytest.mark.parametrize(
    ("content", "message"),
    [("mode: [unclosed", "not valid YAML"), ("- a\n- b\n", "must be a mapping")],
)
def test_unreadable_policies(tmp_path, content, message):
    path = tmp_path / "p.yaml"
    path.write_text(content)
    with pytest.raises(PolicyError, match=message):
        load_policy(path)


def test_missing_policy_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.yaml")


def test_check_config_command(tmp_path, capsys):
    assert main(["check-config", str(ROOT / "config/backstop.yaml")]) == 0
    assert capsys.readouterr().out.startswith("OK:")
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: sometimes\n")
    assert main(["check-config", str(bad)]) == 1
    assert "mode:" in capsys.readouterr().err


def test_check_config_reads_backstop_config(monkeypatch, tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("mode: enforce\n")
    monkeypatch.setenv("BACKSTOP_CONFIG", str(path))
    assert main(["check-config"]) == 0
    assert "mode enforce" in capsys.readouterr().out


def test_settings_come_from_the_environment_and_hide_secrets(monkeypatch):
    monkeypatch.setenv("BACKSTOP_WEBHOOK_TOKEN", "hunter2")
    monkeypatch.setenv("BACKSTOP_API_TOKEN", "")
    monkeypatch.setenv("BACKSTOP_BIND", "0.0.0.0:9000")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    settings = Settings()
    assert settings.bind == "0.0.0.0:9000"
    assert settings.webhook_token.get_secret_value() == "hunter2"
    assert settings.api_token is None  # empty means unset, never an empty password
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert settings.missing_credentials() == ["BACKSTOP_API_TOKEN"]


def test_redis_timeout_is_capped_so_alertmanager_retries_promptly():
    with pytest.raises(ValueError):
        Settings(redis_timeout_seconds=5)
