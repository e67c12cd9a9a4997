"""The dashboard's users file and `backstop hash-password`."""

import io
import sys

import pytest
from werkzeug.security import check_password_hash, generate_password_hash

from cli import main as cli
from config.users import UsersError, load_users


def write(tmp_path, text: str):
    path = tmp_path / "users.yaml"
    path.write_text(text)
    return path


def test_users_load_with_roles(tmp_path):
    hashed = generate_password_hash("a-long-password")
    users = load_users(
        write(
            tmp_path,
            f"users:\n  - {{name: ann, role: operator, password_hash: '{hashed}'}}\n"
            f"  - {{name: vic, password_hash: '{hashed}'}}\n",
        )
    )
    assert users.get("ann").role == "operator" and users.get("vic").role == "viewer"
    assert users.get("nobody") is None


def test_no_file_means_no_password_users():
    assert load_users(None).users == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("users:\n  - {name: a, password_hash: secret123}\n", "users.0.password_hash"),
        ("users:\n  - {name: a, role: admin, password_hash: 'x'}\n", "users.0.role"),
        ("users:\n  - {name: 'a b', password_hash: 'x'}\n", "users.0.name"),
        ("users: [\n", "not valid YAML"),
        ("people: []\n", "people"),
    ],
)
def test_bad_files_name_the_field_and_never_echo_a_password(tmp_path, text, problem):
    with pytest.raises(UsersError) as caught:
        load_users(write(tmp_path, text))
    assert problem in str(caught.value) and "secret123" not in str(caught.value)


def test_names_are_unique(tmp_path):
    hashed = generate_password_hash("a-long-password")
    entry = f"  - {{name: ann, password_hash: '{hashed}'}}\n"
    with pytest.raises(UsersError, match="repeated: ann"):
        load_users(write(tmp_path, "users:\n" + entry + entry))


def test_an_unreadable_file_is_named(tmp_path):
    with pytest.raises(UsersError, match="cannot read"):
        load_users(tmp_path / "missing.yaml")


def test_hash_password_prints_an_entry_that_loads_and_verifies(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse battery\n"))
    assert cli.main(["hash-password", "--name", "ann", "--role", "operator"]) == 0
    printed = capsys.readouterr().out
    assert "correct horse" not in printed
    users = load_users(write(tmp_path, "users:\n" + printed))
    assert check_password_hash(users.get("ann").password_hash, "correct horse battery")


def test_hash_password_refuses_short_passwords(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert cli.main(["hash-password"]) == 1
    assert capsys.readouterr().out == ""
