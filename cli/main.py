"""The `backstop` command: check-config, run (everything, locally), worker, watch,
hash-password (for the dashboard's users file), baseline (thresholds from history),
check-deploy (is an image quarantined?), judge (is a revision worse than the one before?)."""

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from cli.localredis import LocalRedis
from cli.secrets_file import ensure_secret
from config.policy import PolicyError, load_policy
from config.settings import DEFAULT_CONFIG_PATH, Settings

ROOT = Path(__file__).resolve().parent.parent
GENERATED_SECRETS = {
    "BACKSTOP_WEBHOOK_TOKEN": "webhook-token",
    "BACKSTOP_API_TOKEN": "api-token",
    "BACKSTOP_SESSION_SECRET": "session-secret",
}
LOCAL_REDIS_CREDENTIAL = "redis-password"


def check_config(path: str | None) -> int:
    """Validate a policy file; print OK or every problem."""
    target = Path(path or os.environ.get("BACKSTOP_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        policy = load_policy(target)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    for warning in policy.warnings():
        print(f"warning: {target}: {warning}", file=sys.stderr)
    print(f"OK: {target} (mode {policy.mode}, {len(policy.services)} services)")
    return 0


def worker(burst: bool) -> int:
    """Run an RQ worker (with scheduler) on Backstop's queues."""
    from core.connection import RedisUrlError, RedisVersionError, VersionCheck, connect
    from core.logs import configure_logging
    from workers.worker import run_worker

    settings = Settings()
    if not settings.redis_url:
        print("REDIS_URL is not set", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        connection = connect(settings.redis_url, timeout=None)
        VersionCheck(connection).check()  # Redis down: unchecked; RQ needs it to start
    except (RedisUrlError, RedisVersionError) as exc:
        print(f"REDIS_URL: {exc}", file=sys.stderr)
        return 2
    run_worker(connection, burst=burst)
    return 0


def watch() -> int:
    """Run the deployment watcher until SIGTERM or Ctrl-C."""
    from workers.watchprocess import run_watcher

    return run_watcher()


def hash_password(name: str | None, role: str) -> int:
    """Read a password (prompted twice on a terminal, else one line of stdin) and print its
    hash, or a users-file entry when a name is given. The password is never echoed."""
    import getpass

    import yaml
    from werkzeug.security import generate_password_hash

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 12:
        print("use at least 12 characters", file=sys.stderr)
        return 1
    hashed = generate_password_hash(password)
    if name is None:
        print(hashed)
    else:
        entry = [{"name": name, "role": role, "password_hash": hashed}]
        print(yaml.safe_dump(entry, sort_keys=False).rstrip())
    return 0


def local_environment(var: Path, insecure: bool) -> dict[str, str]:
    """The environment for `run`'s processes: generated credentials, metrics dir, PATH."""
    env = dict(os.environ)
    if insecure:
        env["BACKSTOP_INSECURE"] = "1"
    else:
        for name, filename in GENERATED_SECRETS.items():
            if not env.get(name):
                env[name] = ensure_secret(var / filename)
                print(f"backstop: {name} is in {var / filename} (mode 0600)")
    metrics_dir = var / "prometheus"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # Its processes write into honcho's pipes, never a terminal: whether a person reads
    # the lines is known here. JSON unless asked otherwise, or when on a terminal.
    if "BACKSTOP_LOG_FORMAT" not in env:
        env["BACKSTOP_LOG_FORMAT"] = "text" if sys.stdout.isatty() else "json"
    # Procfile commands run from this virtualenv even when it is not activated.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def start_local_redis(var: Path) -> LocalRedis:
    """Start the embedded Redis of `run`: data in var/redis, with the password generated
    into var/redis-password on first start (mode 0600, kept for later starts)."""
    return LocalRedis(var / "redis", password_file=var / LOCAL_REDIS_CREDENTIAL).start()


def run(insecure: bool) -> int:
    """Start every Procfile process, on a local Redis when REDIS_URL is unset."""
    if check_config(None):
        return 2
    var = Path(os.environ.get("BACKSTOP_VAR", ROOT / "var"))
    env = local_environment(var, insecure)
    local = None
    if not env.get("REDIS_URL"):
        from core.connection import redacted

        local = start_local_redis(var)
        env["REDIS_URL"] = local.url
        print(f"backstop: local redis-server at {redacted(local.url)}, data in {var / 'redis'}")
        print(f"backstop: its password is in {var / LOCAL_REDIS_CREDENTIAL} (mode 0600)")
    bind = env.get("BACKSTOP_BIND", "127.0.0.1:8080")
    print(f"backstop: receiver on http://{bind}")
    print(f"backstop: dashboard on http://{bind}/ (log in with the API token, or users from")
    print("          BACKSTOP_USERS_FILE; see docs/dashboard.md)")
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT)],
        env=env,
    )
    signal.signal(signal.SIGTERM, lambda *_: honcho.terminate())
    try:
        while True:
            try:
                return honcho.wait()
            except KeyboardInterrupt:
                honcho.send_signal(signal.SIGINT)  # honcho stops its processes and exits
    finally:
        if local is not None:
            local.stop()


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    cli = argparse.ArgumentParser(prog="backstop", description=__doc__)
    commands = cli.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-config", help="validate a policy file")
    check.add_argument("path", nargs="?", help="policy file (default: $BACKSTOP_CONFIG)")
    start = commands.add_parser("run", help="run receiver and worker locally (make run)")
    start.add_argument(
        "--insecure", action="store_true", help="no credentials: for local experiments only"
    )
    commands.add_parser("watch", help="run the deployment watcher")
    work = commands.add_parser("worker", help="run an RQ worker with scheduler")
    work.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    commands.add_parser(
        "gameday",
        help="run game days against the real pipeline (see `backstop gameday --help`)",
        add_help=False,
    )
    hashing = commands.add_parser(
        "hash-password", help="hash a dashboard password for BACKSTOP_USERS_FILE"
    )
    hashing.add_argument("--name", help="print a users-file entry for this user")
    hashing.add_argument("--role", choices=("viewer", "operator"), default="viewer")
    from cli.baseline.command import add_arguments as baseline_arguments

    baseline = commands.add_parser(
        "baseline",
        help="baseline kill-switch KPIs from Prometheus, propose thresholds, write or lint rules",
    )
    baseline_arguments(baseline)
    from cli.check_deploy import add_arguments as check_deploy_arguments

    check_deploy = commands.add_parser(
        "check-deploy", help="ask Backstop whether images may deploy (exit 1: quarantined)"
    )
    check_deploy_arguments(check_deploy)
    from cli.judge import add_arguments as judge_arguments

    judging = commands.add_parser(
        "judge", help="is a revision worse than the one before it? (exit 1: confirmed)"
    )
    judge_arguments(judging)
    return cli


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `backstop` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gameday"]:
        # Game days bring up test infrastructure (testbed/); the product never imports it,
        # so they run as their own program.
        return subprocess.call([sys.executable, "-m", "gameday", *argv[1:]], cwd=ROOT)
    args = parser().parse_args(argv)
    if args.command == "check-config":
        return check_config(args.path)
    if args.command == "run":
        return run(args.insecure)
    if args.command == "watch":
        return watch()
    if args.command == "hash-password":
        return hash_password(args.name, args.role)
    if args.command == "baseline":
        from cli.baseline.command import main as baseline

        return baseline(args)
    if args.command == "judge":
        from cli.judge import main as judge

        return judge(args)
    if args.command == "check-deploy":
        from cli.check_deploy import main as check_deploy

        return check_deploy(args)
    return worker(args.burst)


if __name__ == "__main__":
    sys.exit(main())
