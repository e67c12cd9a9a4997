"""Self-signed TLS material for the test control plane, made with the openssl CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testbed.kube.procs import StackError
from testbed.tls import issue_ca, issue_server_cert, openssl


@dataclass(frozen=True)
class Certs:
    """Paths of the CA, the apiserver's serving pair and the service-account signing key."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "service-account.key"


def ensure_certs(directory: Path) -> Certs:
    """Create the CA, serving certificate and signing key in directory unless present."""
    certs = Certs(directory)
    if all(p.exists() for p in (certs.ca_cert, certs.server_cert, certs.service_account_key)):
        return certs
    directory.mkdir(parents=True, exist_ok=True)
    issue_ca(
        certs.ca_key,
        certs.ca_cert,
        subject="/CN=backstop-test-ca",
        days=3650,
        key_usage="keyCertSign,cRLSign",
        error=StackError,
    )
    issue_server_cert(
        certs.server_key,
        certs.server_cert,
        ca_cert=certs.ca_cert,
        ca_key=certs.ca_key,
        subject="/CN=kube-apiserver",
        days=3650,
        key_usage="digitalSignature, keyEncipherment",
        error=StackError,
    )
    openssl(
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        certs.service_account_key,
        error=StackError,
    )
    return certs
