"""`backstop check-deploy` against the real receiver under gunicorn: a quarantined image
stops the pipeline (exit 1, saying why), a fix passes (exit 0), and a question that cannot
be asked is exit 2, never a traceback."""

import argparse

import pytest

from cli.check_deploy import add_arguments, main
from cli.localredis import free_port
from config.policy import Policy
from core.store import Store
from tests import samples
from tests.secrets import WEBHOOK_TOKEN

pytestmark = pytest.mark.integration


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return main(parser.parse_args(list(argv)))


@pytest.fixture
def quarantined(redis_client):
    Store(redis_client, Policy()).quarantine.add(
        samples.quarantine(revision="7", images=["shop/checkout:2.1"])
    )


@pytest.fixture(autouse=True)
def token(monkeypatch):
    for name in ("BACKSTOP_GATE_TOKEN", "BACKSTOP_API_TOKEN", "BACKSTOP_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BACKSTOP_WEBHOOK_TOKEN", WEBHOOK_TOKEN)


def test_a_quarantined_image_stops_the_pipeline_and_a_fix_passes(
    receiver_server, quarantined, capsys
):
    url = receiver_server.url
    assert run("--url", url, "--image", "docker.io/shop/checkout:2.1") == 1
    said = capsys.readouterr().out
    assert "quarantined: docker.io/shop/checkout:2.1" in said and "rollback rb-1" in said
    assert run("--url", url, "--image", "shop/checkout:2.2") == 0
    assert "ok: shop/checkout:2.2 is not quarantined" in capsys.readouterr().out
    other = ["--workload", "shop/Deployment/cart"]
    assert run("--url", url, "--image", "shop/checkout:2.1", *other) == 0


def test_a_question_that_cannot_be_asked_is_exit_2(receiver_server, tmp_path, capsys, monkeypatch):
    url = receiver_server.url
    wrong = tmp_path / "token"
    wrong.write_text("not-the-token\n")
    assert run("--url", url, "--image", "a:1", "--token-file", str(wrong)) == 2
    assert "answered 401" in capsys.readouterr().err
    nobody = f"http://127.0.0.1:{free_port()}"
    assert run("--url", nobody, "--image", "a:1") == 2
    assert run("--url", "file:///etc/passwd", "--image", "a:1") == 2
    monkeypatch.delenv("BACKSTOP_WEBHOOK_TOKEN")
    assert run("--url", url, "--image", "a:1") == 2
    assert "no token" in capsys.readouterr().err
