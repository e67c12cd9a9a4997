"""A throwaway PostgreSQL cluster for benchmarks: initdb in a temp directory, one postgres
server on a free loopback port, stopped by pid and deleted afterwards.

The binaries are Debian's (package `postgresql`, under /usr/lib/postgresql/<version>/bin),
or whatever `initdb` and `postgres` are on PATH. PostgreSQL refuses to run as root: when
this process is root, the cluster's files belong to an unprivileged user (`postgres`, which
Debian's package creates, else `nobody`) and the server runs as that user. Clients connect
over TCP to 127.0.0.1 as the cluster's superuser, with trust authentication: the cluster
lives for one benchmark and holds nothing but its data.
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.ingest import cpu_seconds, workers_of
from testbed.kube.procs import free_port

SUPERUSER = "bench"


def binaries() -> Path:
    """The directory of PostgreSQL's server programs: Debian's newest version, else PATH's."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("postgres")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    raise FileNotFoundError("PostgreSQL is not installed: apt-get install postgresql")


def postgres_cpu(postmaster: int) -> float:
    """CPU seconds of a PostgreSQL cluster: the postmaster, the backends and helpers it has
    now, and those it reaped. alerta connects once per request, so most backends live for
    one request and are counted through the postmaster's reaped-children time."""
    try:
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime
    return cpu_seconds([postmaster, *workers_of(postmaster)]) + reaped


def postgres_version() -> str:
    """`postgres --version` of the binaries used, or "" when there are none."""
    try:
        done = subprocess.run([str(binaries() / "postgres"), "--version"], capture_output=True)
    except (OSError, FileNotFoundError):
        return ""
    return done.stdout.decode(errors="replace").strip()


def _run_as() -> pwd.struct_passwd | None:
    """The user the server runs as when we are root (None: as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run as")


class LocalPostgres:
    """`with LocalPostgres(settings) as pg:` a running cluster; `pg.url(db)` for clients.

    `settings`: server settings given on postgres's command line (`-c name=value`), for
    instance {"max_connections": "200"}; everything else is initdb's default.
    """

    def __init__(self, settings: dict[str, str] | None = None):
        self.settings = settings or {}
        self.bin = binaries()
        self.user = _run_as()
        self.port = free_port()
        self.work: Path | None = None
        self.process: subprocess.Popen | None = None

    def url(self, database: str) -> str:
        """A libpq URL for `database` on this cluster."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _as_user(self) -> dict:
        """Popen arguments that drop root for the server's user."""
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 30.0) -> "LocalPostgres":
        """initdb, start the server and wait until it accepts connections."""
        self.work = Path(tempfile.mkdtemp(prefix="backstop-pg-"))
        try:
            data, sockets = self.work / "data", self.work / "sockets"
            for directory in (data, sockets):
                directory.mkdir()
                if self.user is not None:
                    os.chown(directory, self.user.pw_uid, self.user.pw_gid)
            if self.user is not None:
                self.work.chmod(0o755)  # mkdtemp's 0700 would keep the server's user out
            log = (self.work / "postgres.log").open("ab")
            subprocess.run(
                [
                    *(str(self.bin / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust"),
                    *("-E", "UTF8", "--locale", "C", "--no-sync"),
                ],
                stdout=log,
                stderr=log,
                check=True,
                cwd="/",
                **self._as_user(),
            )
            settings = {
                "listen_addresses": "127.0.0.1",
                "port": str(self.port),
                "unix_socket_directories": str(sockets),
                **self.settings,
            }
            args = [str(self.bin / "postgres"), "-D", str(data)]
            for name, value in settings.items():
                args += ["-c", f"{name}={value}"]
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
                start_new_session=True,
                **self._as_user(),
            )
            log.close()
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres not ready after {timeout}s: {self.log_tail()}")
            time.sleep(0.1)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one SQL statement with psql; its unaligned, tuples-only output."""
        done = subprocess.run(
            [
                *(str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"),
                *("-d", self.url(database), "-c", statement),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for error messages."""
        if self.work is None:
            return ""
        try:
            text = (self.work / "postgres.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Fast shutdown by pid (SIGINT: abort sessions, checkpoint, exit), then delete."""
        if self.process is not None and self.process.poll() is None:
            # The postmaster alone: it stops its backends; SIGINT to a backend would only
            # cancel its query.
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its session: it and its backends
                self.process.wait()
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
