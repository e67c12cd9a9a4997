"""A real, local Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager.

Everything lives in one work directory: certificates (`pki/`), the static token file,
etcd's data, process logs (`logs/`), the admin `kubeconfig`, and `state.json`, which
records each process's pid so that another process (`kube-down`) can stop the stack.
The pod helper (see pods.py) stands in for the missing kubelet. Each start is a fresh,
empty cluster; all listeners are on 127.0.0.1, on ports picked free at start.
"""

from __future__ import annotations

import base64
import csv
import http.client
import io
import json
import os
import secrets
import shutil
import ssl
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from testbed.kube import certs as certs_module
from testbed.kube import kubebuild, pods, procs
from testbed.kube.procs import LOOPBACK, StackError

ADMIN_USER = "backstop-admin"
ADMIN_GROUPS = ("system:masters",)
# statefulset and daemonset work without kubelet or scheduler: the pod helper makes pods
# ready and registers the one Node that DaemonSets target (see the integration tests).
# namespace empties and removes deleted namespaces, so tests can clean up after themselves.
CONTROLLERS = (
    "deployment",
    "replicaset",
    "garbagecollector",
    "statefulset",
    "daemonset",
    "namespace",
)
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
REPO_ROOT = Path(__file__).resolve().parents[2]

# Start order (stop runs in reverse); each is checked to still run this program before a kill.
PROGRAMS = ("etcd", "kube-apiserver", "kube-controller-manager", pods.PROGRAM)


class ControlPlane:
    """Starts, inspects and stops the stack living in one work directory."""

    def __init__(self, workdir: Path, binaries: Path | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self._binaries = binaries
        self.logs = self.workdir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def _state_file(self) -> Path:
        return self.workdir / "state.json"

    @property
    def _tokens_file(self) -> Path:
        return self.workdir / "tokens.json"

    def state(self) -> dict:
        """Return the recorded pids, ports and apiserver URL (empty if never started)."""
        try:
            return json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return {}

    def _save(self, state: dict) -> None:
        staging = self._state_file.with_suffix(".tmp")
        staging.write_text(json.dumps(state, indent=2))
        staging.replace(self._state_file)

    def is_up(self) -> bool:
        """Tell whether every recorded process runs and the apiserver answers /readyz."""
        state = self.state()
        pids = state.get("pids", {})
        if set(pids) != set(PROGRAMS):
            return False
        if not all(procs.is_running(pid, name) for name, pid in pids.items()):
            return False
        return self._apiserver_ready(state["server"])

    def start(self, timeout: float = 60.0) -> None:
        """Start a fresh cluster; on any failure stop what was started and raise StackError."""
        if self.is_up():
            raise StackError(f"the control plane in {self.workdir} is already up")
        self.stop()  # leftovers of a crashed or half-finished run
        binaries = self._binaries or kubebuild.ensure_binaries()
        kubebuild.ensure_packages(kubebuild.RUNTIME_PACKAGES)
        self.logs.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
        (self.workdir / pods.UNREADY_FILE).unlink(missing_ok=True)
        pki = certs_module.ensure_certs(self.workdir / "pki")
        if not self._tokens_file.exists():
            self._write_tokens(
                {ADMIN_USER: {"token": secrets.token_urlsafe(32), "groups": list(ADMIN_GROUPS)}}
            )
        ports = ("etcd-client", "etcd-peer", "apiserver", "controller-manager")
        state = {"pids": {}, "ports": dict(zip(ports, procs.free_ports(len(ports)), strict=True))}
        state["server"] = f"https://{LOOPBACK}:{state['ports']['apiserver']}"
        state["binaries"] = str(binaries)
        try:
            self._start_etcd(state, timeout)
            self._start_apiserver(state, pki, timeout)
            write_kubeconfig(
                self.kubeconfig, state["server"], self.token(ADMIN_USER), pki.ca_cert.read_bytes()
            )
            self._start_controller_manager(state, timeout)
            self._start_pod_helper(state, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop each recorded process by pid, newest first; keep logs and data for inspection."""
        state = self.state()
        pids = state.get("pids", {})
        for name in reversed(PROGRAMS):
            if name in pids:
                procs.stop(pids.pop(name), name)
                self._save(state)

    def token(self, name: str) -> str:
        """Return the static bearer token of a user made by start() or add_token()."""
        return self._tokens()[name]["token"]

    def add_token(self, name: str, groups: Sequence[str] = ()) -> str:
        """Create a static-token user (not system:masters unless asked) and return its token.

        The 1.20 apiserver reads its token file only at startup, so a running apiserver is
        restarted on the same port (about 4 s); clients reconnect transparently.
        """
        tokens = self._tokens()
        if name in tokens and tokens[name]["groups"] == list(groups):
            return tokens[name]["token"]
        tokens[name] = {"token": secrets.token_urlsafe(32), "groups": list(groups)}
        self._write_tokens(tokens)
        if self.is_up():
            self._restart_apiserver()
        return tokens[name]["token"]

    def _tokens(self) -> dict:
        return json.loads(self._tokens_file.read_text())

    def _write_tokens(self, tokens: dict) -> None:
        """Keep tokens as JSON for us and as the apiserver's CSV (token,user,uid,"groups")."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._tokens_file.write_text(json.dumps(tokens, indent=2))
        rows = io.StringIO()
        writer = csv.writer(rows, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        for user, entry in tokens.items():
            writer.writerow([entry["token"], user, user, ",".join(entry["groups"])])
        (self.workdir / "tokens.csv").write_text(rows.getvalue())
        for path in (self._tokens_file, self.workdir / "tokens.csv"):
            path.chmod(0o600)

    def _restart_apiserver(self) -> None:
        state = self.state()
        # Open watches hold a graceful shutdown for a long time; etcd keeps the data anyway.
        procs.stop(state["pids"].pop("kube-apiserver"), "kube-apiserver", timeout=1.0)
        self._start_apiserver(state, certs_module.Certs(self.workdir / "pki"), timeout=60.0)

    def _spawn(self, state: dict, name: str, argv: Sequence[str], **kwargs) -> int:
        """Start one process and record its pid at once, so a failure can still stop it."""
        pid = procs.spawn(name, argv, self.logs, **kwargs)
        state["pids"][name] = pid
        self._save(state)
        return pid

    def _await(self, name: str, ready: Callable[[], bool], state: dict, timeout: float) -> None:
        """Wait until ready() or fail with the process's log if it died or timed out."""
        pid = state["pids"][name]

        def settled() -> bool:
            return ready() or not procs.is_running(pid, name)

        if not procs.wait_until(settled, timeout) or not procs.is_running(pid, name):
            log = self.logs / f"{name}.log"
            raise StackError(
                f"{name} did not become ready within {timeout:.0f} s; log {log}:\n"
                f"{procs.log_tail(self.logs, name)}"
            )

    def _start_etcd(self, state: dict, timeout: float) -> None:
        client = f"http://{LOOPBACK}:{state['ports']['etcd-client']}"
        peer = f"http://{LOOPBACK}:{state['ports']['etcd-peer']}"
        self._spawn(
            state,
            "etcd",
            [
                "etcd",
                "--name=backstop",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=backstop={peer}",
                "--logger=zap",
                "--log-outputs=stderr",  # the default logger is deprecated
            ],
        )
        state["etcd"] = client
        self._save(state)
        healthy = b'"health":"true"'
        self._await("etcd", lambda: _http_ok(f"{client}/health", healthy), state, timeout)

    def _start_apiserver(self, state: dict, pki: certs_module.Certs, timeout: float) -> None:
        self._spawn(
            state,
            "kube-apiserver",
            [
                str(Path(state["binaries"]) / "kube-apiserver"),
                f"--etcd-servers={state['etcd']}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                # The `kubernetes` Service may not point at loopback; nothing in-cluster needs it.
                "--endpoint-reconciler-type=none",
                f"--secure-port={state['ports']['apiserver']}",
                f"--tls-cert-file={pki.server_cert}",
                f"--tls-private-key-file={pki.server_key}",
                f"--cert-dir={self.workdir / 'apiserver'}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                # No service-account or token controllers run, so pods must not need a token;
                # no node controller runs to lift the not-ready taint this plugin puts on new
                # nodes, and that taint would keep DaemonSets off the pod helper's node.
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.service_account_key}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            ],
        )
        server = state["server"]
        self._await("kube-apiserver", lambda: self._apiserver_ready(server), state, timeout)

    def _start_controller_manager(self, state: dict, timeout: float) -> None:
        port = state["ports"]["controller-manager"]
        self._spawn(
            state,
            "kube-controller-manager",
            [
                str(Path(state["binaries"]) / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--leader-elect=false",
                "--port=0",  # the insecure port would otherwise listen on 0.0.0.0:10252
                f"--bind-address={LOOPBACK}",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'controller-manager'}",
            ],
        )
        health = f"https://{LOOPBACK}:{port}/healthz"
        self._await(
            "kube-controller-manager", lambda: _http_ok(health, b"ok", _SELF_SIGNED), state, timeout
        )

    def _start_pod_helper(self, state: dict, timeout: float) -> None:
        marker = self.workdir / pods.READY_MARKER
        marker.unlink(missing_ok=True)
        # The helper imports testbed.kube, so it must find the repository on its path.
        path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        self._spawn(
            state,
            pods.PROGRAM,
            pods.command(self.kubeconfig, self.workdir),
            env={**os.environ, "PYTHONPATH": path},
        )
        self._await(pods.PROGRAM, marker.exists, state, timeout)

    def _apiserver_ready(self, server: str) -> bool:
        context = ssl.create_default_context(cafile=str(self.workdir / "pki" / "ca.crt"))
        return _http_ok(f"{server}/readyz", b"ok", context, token=self.token(ADMIN_USER))


def _unverified_context() -> ssl.SSLContext:
    """TLS context for the controller manager's throwaway self-signed health endpoint."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_SELF_SIGNED = _unverified_context()


def _http_ok(
    url: str, expected: bytes, context: ssl.SSLContext | None = None, token: str | None = None
) -> bool:
    """Tell whether GET url answers 200 with `expected` in the body."""
    request = urllib.request.Request(url)  # noqa: S310 - always an http(s) URL built here
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:  # noqa: S310
            return response.status == 200 and expected in response.read()
    except (OSError, http.client.HTTPException):  # URLError and SSLError are OSErrors
        return False


def write_kubeconfig(path: Path, server: str, token: str, ca_pem: bytes | None = None) -> None:
    """Write a self-contained kubeconfig (CA inlined; system CAs when None) for a bearer token."""
    name = "backstop-test"
    cluster = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is valid YAML, and kubeconfigs are read as YAML.
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
