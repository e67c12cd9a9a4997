"""The `chat:` block of the policy (config/chat.py) and the chat clients' error texts: a
secret is named, never written in the policy, never quoted in an error."""

import pytest

from config.chat import ChatPolicy, SecretRef, SecretUnavailable
from config.policy import Policy, PolicyError, load_policy
from core import queues
from core.integrations.chat import quoted

SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"


def test_a_secret_written_in_the_policy_is_refused_without_being_repeated(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(f"chat:\n  targets:\n    ops: {{kind: slack, webhook: '{SLACK_URL}'}}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "never the secret itself" in str(caught.value)
    assert "XXXXSECRETXXXX" not in str(caught.value)


@pytest.mark.parametrize(
    "target, message",
    [
        ({"kind": "teams", "token": {"env": "T"}, "webhook": {"env": "W"}}, "webhook only"),
        ({"kind": "slack"}, "either a webhook or a token"),
        ({"kind": "slack", "token": {"env": "T"}}, "needs the channel"),
        ({"kind": "slack", "webhook": {"env": "W"}, "channel": "C1"}, "leave channel out"),
        ({"kind": "slack", "webhook": {"env": "W", "file": "/f"}}, "exactly one of env or file"),
        ({"kind": "slack", "webhook": {"env": "not a name"}}, "string_pattern_mismatch"),
        ({"kind": "slack", "webhook": {"env": "W"}, "events": ["deployed"]}, "literal_error"),
    ],
)
def test_targets_must_be_complete(target, message):
    with pytest.raises(ValueError) as caught:
        ChatPolicy.model_validate({"targets": {"t": target}})
    assert message in str(caught.value) or message in repr(caught.value.errors())


def test_routes_and_services_name_known_targets_only():
    target = {"kind": "slack", "webhook": {"env": "W"}}
    with pytest.raises(ValueError, match="routes names no target called nope"):
        ChatPolicy.model_validate({"targets": {"ops": target}, "routes": ["nope"]})
    with pytest.raises(ValueError, match=r"services.0 \(checkout\): chat names no target"):
        Policy.model_validate(
            {
                "chat": {"targets": {"ops": target}},
                "services": [{"name": "checkout", "chat": ["x"]}],
            }
        )


def test_routing_defaults_overrides_and_events():
    chat = ChatPolicy.model_validate(
        {
            "targets": {
                "a": {"kind": "slack", "webhook": {"env": "A"}},
                "b": {"kind": "teams", "webhook": {"env": "B"}, "events": ["failed"]},
            }
        }
    )
    assert chat.route(None, "failed") == ["a", "b"]  # no routes: every target
    assert chat.route(None, "verified") == ["a"]  # b hears only of failures
    assert chat.route(["b", "b"], "failed") == ["b"] and chat.route([], "failed") == []
    assert chat.wants("failed") and not ChatPolicy().wants("failed")
    routed = chat.model_copy(update={"routes": ["b"]})
    assert routed.route(None, "failed") == ["b"] and routed.route(["a"], "failed") == ["a"]


def test_secrets_are_read_from_the_environment_or_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv("CHAT_SECRET", " s3cret \n")
    assert SecretRef(env="CHAT_SECRET").read().get_secret_value() == "s3cret"
    path = tmp_path / "secret"
    path.write_text("from-file\n")
    assert SecretRef(file=str(path)).read().get_secret_value() == "from-file"
    monkeypatch.setenv("CHAT_SECRET", "")
    with pytest.raises(SecretUnavailable, match=r"^\$CHAT_SECRET is unset or empty$"):
        SecretRef(env="CHAT_SECRET").read()
    with pytest.raises(SecretUnavailable, match="cannot be read"):
        SecretRef(file=str(tmp_path / "missing")).read()
    assert "s3cret" not in repr(SecretRef(env="CHAT_SECRET"))


def test_error_texts_cut_out_the_secret_url():
    page = f"<html>502: upstream {SLACK_URL} failed\n(path /services/T000/B000/XXXXSECRETXXXX)"
    text = quoted(page, SLACK_URL)
    assert "XXXXSECRETXXXX" not in text and "[redacted]" in text and "\n" not in text
    teams = "https://x.example/workflows/1/invoke?api-version=1&sig=SIGSECRET"
    assert "SIGSECRET" not in quoted("bad request for ?api-version=1&sig=SIGSECRET", teams)
    assert len(quoted("x" * 1000)) == 120


def test_chat_job_ids_are_deterministic_and_rq_safe():
    key = queues.chat_event("verified", attempt=2)
    assert key == "verified:2"
    assert queues.chat_job_id("rollback-ab12-7", key) == "chat-rollback-ab12-7-verified_2"
    assert queues.chat_event("awaiting_approval", decision_id="e1") == "awaiting_approval:e1"
    assert queues.chat_event("denied", decision_id="e1") == "denied:e1"
    assert queues.chat_event("quarantine_released", attempt=3) == "quarantine_released"
