"""A pytest plugin: after the run, no log holds a secret the tests used (docs/reliability.md R6).

What is scanned:
- pytest's captured output of every test (stdout, stderr, log records): Backstop logs JSON
  lines to stderr, and worker subprocesses' output is forwarded there (testbed.processes);
- log records as they are emitted, so a run with `-s` (nothing captured) is covered too;
- every log file under the session's temporary directories (gunicorn, workers, redis,
  Prometheus, Alertmanager, the Kubernetes control plane all log into files there) and
  log files under var/ written during the run.

Any secret of tests/secrets.py found there fails the session (exit status 1) with a
message naming the file or test and the secret's name, never the secret itself.
"""

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.secrets import SECRETS

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LogScan:
    """What was looked at and what was found during one pytest session."""

    started: float = field(default_factory=time.time)
    basetemp: Path | None = None
    findings: list[tuple[str, str]] = field(default_factory=list)  # (where, secret name)
    files_scanned: int = 0

    def check(self, where: str, text: str | bytes) -> None:
        """Record every secret that occurs in `text`."""
        for name, value in SECRETS:
            needle = value.encode() if isinstance(text, bytes) else value
            if needle in text and (where, name) not in self.findings:
                self.findings.append((where, name))


class _Watch(logging.Handler):
    """Checks every log record as it is emitted (whatever is captured or not)."""

    def __init__(self, scan: LogScan) -> None:
        super().__init__(logging.NOTSET)
        self.scan = scan
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + repr(getattr(record, "fields", ""))
        except Exception:  # a record that cannot be formatted is not ours to judge
            return
        self.scan.check(f"log record of {record.name}", text)


def is_log_file(path: Path) -> bool:
    """Files that hold a program's log output: *.log, rotated *.log.N, anything in logs/."""
    name = path.name
    return name.endswith(".log") or ".log." in name or path.parent.name == "logs"


def log_files(basetemp: Path | None, started: float) -> list[Path]:
    """Log files of this session: all under its basetemp, and var/ ones written since start."""
    found = []
    if basetemp is not None and basetemp.exists():
        found += [p for p in basetemp.rglob("*") if p.is_file() and is_log_file(p)]
    var = ROOT / "var"
    if var.exists():
        found += [
            p
            for p in var.rglob("*")
            if p.is_file() and is_log_file(p) and p.stat().st_mtime >= started
        ]
    return found


class LogScanPlugin:
    """The hooks: collect findings during the run, scan files and judge at its end."""

    def __init__(self) -> None:
        self.scan = LogScan()
        self.watch = _Watch(self.scan)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for title, content in report.sections:
            self.scan.check(f"{report.nodeid} ({title})", content)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Scan the session's log files; a secret anywhere fails the run."""
        scan = self.scan
        for path in log_files(scan.basetemp, scan.started):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            scan.files_scanned += 1
            scan.check(str(path), data)
        if scan.findings and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        scan = self.scan
        if not scan.findings:
            terminalreporter.write_line(
                f"log scan: no secret in {scan.files_scanned} log files or in captured output"
            )
            return
        terminalreporter.section("log scan: secrets found in logs", sep="=", red=True, bold=True)
        for where, name in scan.findings:
            terminalreporter.write_line(f"{name} appears in {where}", red=True)


_PLUGIN = pytest.StashKey[LogScanPlugin]()
# Backstop's logger does not propagate to the root logger, so it gets its own watch.
_WATCHED_LOGGERS = ("", "backstop")


def pytest_configure(config: pytest.Config) -> None:
    plugin = LogScanPlugin()
    config.stash[_PLUGIN] = plugin
    config.pluginmanager.register(plugin, "backstop-logscan")
    for name in _WATCHED_LOGGERS:
        logging.getLogger(name).addHandler(plugin.watch)


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.stash.get(_PLUGIN, None)
    if plugin is not None:
        for name in _WATCHED_LOGGERS:
            logging.getLogger(name).removeHandler(plugin.watch)


@pytest.fixture(scope="session", autouse=True)
def _logscan_basetemp(tmp_path_factory, pytestconfig):
    """Remember the session's temporary directory, where every started program logs."""
    pytestconfig.stash[_PLUGIN].scan.basetemp = tmp_path_factory.getbasetemp()
