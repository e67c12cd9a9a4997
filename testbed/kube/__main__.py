"""Command line for the test stack: `python -m testbed.kube kube-up|kube-down|build|pod-helper`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from testbed.kube import kubebuild, pods
from testbed.kube.kube import ControlPlane
from testbed.kube.procs import StackError

DEFAULT_DIR = Path("var/kube")


def kube_up(args: argparse.Namespace) -> int:
    """Start the control plane and pod helper in the background; print the kubeconfig path."""
    plane = ControlPlane(args.dir)
    if plane.is_up():
        print(f"already up: {plane.kubeconfig}", file=sys.stderr)
        print(plane.kubeconfig)
        return 0
    started = time.monotonic()
    plane.start()
    print(
        f"control plane up in {time.monotonic() - started:.1f} s; logs in {plane.logs}; "
        f"stop with `python -m testbed.kube kube-down --dir {args.dir}`",
        file=sys.stderr,
    )
    print(plane.kubeconfig)
    return 0


def kube_down(args: argparse.Namespace) -> int:
    """Stop every process recorded for the directory, by pid."""
    ControlPlane(args.dir).stop()
    return 0


def build(args: argparse.Namespace) -> int:
    """Build (or find) the Kubernetes binaries and print their directory."""
    print(kubebuild.ensure_binaries())
    return 0


def pod_helper(args: argparse.Namespace) -> int:
    """Run the kubelet stand-in in the foreground (kube-up starts it detached)."""
    pods.main(args.kubeconfig, args.dir)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m testbed.kube", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    for name, handler in (("kube-up", kube_up), ("kube-down", kube_down)):
        sub = commands.add_parser(name, help=handler.__doc__)
        sub.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="work directory")
        sub.set_defaults(handler=handler)
    sub = commands.add_parser("build", help=build.__doc__)
    sub.set_defaults(handler=build)
    sub = commands.add_parser(pods.PROGRAM, help=pod_helper.__doc__)
    sub.add_argument("--kubeconfig", type=Path, required=True)
    sub.add_argument("--dir", type=Path, required=True, help="work directory (unready-images)")
    sub.set_defaults(handler=pod_helper)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
