"""A real, local redis-server for `make run` and the tests, started and stopped by pid.

Debian's `redis-server` (`make run` installs it). It binds to loopback only, on a free
port, with append-only persistence in the directory it is given, and a password: any local
user can reach a loopback port, and a Redis that anyone can write to is a command channel
into the worker. The password is kept in a file only its owner can read (a random one,
generated on first start) and given to redis-server on its standard input (`redis-server
-` reads its configuration there), never on its command line, which every local user can
read in /proc. The server runs with umask 077: its directory and files are the owner's only.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from cli.secrets_file import ensure_secret
from core.connection import redis_server_binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRedis:
    """One redis-server process owned by this object, with a password.

    The password is `password`, else the one kept in `password_file` (default: a file
    `password` in `directory`), generated there on first use: a server started again on the
    same directory has the same password, and its clients' URL still works."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        persist: bool = True,
        password: str | None = None,
        password_file: Path | None = None,
    ):
        self.directory = Path(directory)
        self.port = port or free_port()
        self.persist = persist
        _private_directory(self.directory)
        self.password = password or ensure_secret(password_file or self.directory / "password")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of this server, with its password."""
        return f"redis://:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0"

    def config(self) -> str:
        """redis-server's configuration, password included (written to its stdin only)."""
        settings = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "protected-mode": "yes",
            "requirepass": self.password,
            "dir": str(self.directory),
            "save": "",
            "appendonly": "yes" if self.persist else "no",
            "daemonize": "no",
            "logfile": str(self.directory / "redis.log"),
        }
        return "".join(f"{name} {_quoted(value)}\n" for name, value in settings.items())

    def start(self, timeout: float = 10.0) -> "LocalRedis":
        """Start the server and wait until it accepts connections."""
        _private_directory(self.directory)
        self.process = subprocess.Popen(
            [redis_server_binary(), "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,  # "Reading config from stdin"; errors go to stderr
            start_new_session=True,
            umask=0o077,
        )
        assert self.process.stdin is not None  # stdin=PIPE
        self.process.stdin.write(self.config().encode())
        self.process.stdin.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.directory / 'redis.log'}")
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"redis-server did not start within {timeout}s")

    def _answers(self) -> bool:
        """True once the server answers an authenticated PING."""
        hello = _command("AUTH", self.password) + _command("PING")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(hello)
                reply = b""
                while reply.count(b"\r\n") < 2:
                    chunk = sock.recv(64)
                    if not chunk:
                        return False
                    reply += chunk
        except OSError:
            return False
        return reply == b"+OK\r\n+PONG\r\n"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by its pid: SIGTERM (it flushes the AOF), then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "LocalRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _private_directory(directory: Path) -> None:
    """Create `directory` (0700), and take back what an earlier start left open to others:
    every directory under it 0700, every file 0600."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    for path in directory.rglob("*"):
        if not path.is_symlink():  # a link's target is not the server's to change
            path.chmod(0o700 if path.is_dir() else 0o600)


def _quoted(value: str) -> str:
    """A value for redis.conf: in double quotes, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _command(*parts: str) -> bytes:
    """A command in RESP, Redis's wire format."""
    encoded = [part.encode() for part in parts]
    return f"*{len(encoded)}\r\n".encode() + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded
    )
