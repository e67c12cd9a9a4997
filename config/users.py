"""Dashboard users: a YAML file of names, password hashes and roles (BACKSTOP_USERS_FILE).

    users:
      - name: alice
        role: operator            # operator: may act; viewer: may only look
        password_hash: "scrypt:32768:8:1$..."   # from `backstop hash-password`

Only hashes are stored, never passwords. The file is read once at start; a mistake in it
stops Backstop with the file, the entry and the field named. Each entry has a stamp, a
fingerprint of its name, role and hash: a session remembers the stamp it was made with and
ends once the entry changes (another password or role) or is gone.
"""

import hashlib
import re
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Role = Literal["viewer", "operator"]
ROLES: tuple[str, ...] = ("viewer", "operator")
# The hash formats werkzeug.security writes: "<method>:<params>$<salt>$<hex digest>".
_HASH = re.compile(r"^(scrypt|pbkdf2)(:[A-Za-z0-9:]+)?\$[^$]+\$[0-9a-f]{32,}$")


class UsersError(ValueError):
    """The users file cannot be used; the message says where and why."""


class User(BaseModel):
    """One dashboard user."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    role: Role = "viewer"
    password_hash: str = Field(min_length=1)

    @field_validator("password_hash")
    @classmethod
    def _is_a_hash(cls, value: str) -> str:
        if not _HASH.match(value):
            raise ValueError(
                "must be a password hash from `backstop hash-password` "
                "(scrypt or pbkdf2), never a plain password"
            )
        return value

    @cached_property
    def stamp(self) -> str:
        """Fingerprint of this entry. Unkeyed is safe: the password hash it covers is salted,
        so the stamp helps no one guess the password."""
        entry = "\x00".join((self.name, self.role, self.password_hash))
        return hashlib.sha256(b"backstop-user-v1\x00" + entry.encode()).hexdigest()[:32]


class Users(BaseModel):
    """Everyone who may log in with a password."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    users: list[User] = Field(default_factory=list)

    @field_validator("users")
    @classmethod
    def _unique_names(cls, value: list[User]) -> list[User]:
        names = [user.name for user in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"names must be unique; repeated: {', '.join(twice)}")
        return value

    @cached_property
    def _by_name(self) -> dict[str, User]:
        return {user.name: user for user in self.users}

    def get(self, name: str) -> User | None:
        """The user called `name`, if any."""
        return self._by_name.get(name)


def load_users(path: Path | None) -> Users:
    """Read the users file; no file configured means no password users."""
    if path is None:
        return Users()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise UsersError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsersError(f"{path}: not valid YAML: {exc}") from None
    try:
        return Users.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise UsersError(f"{path}: {problems}") from None
