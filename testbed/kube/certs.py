"""Self-signed TLS material for the test control plane, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from testbed.kube.procs import StackError


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


# EC keys: generated in milliseconds, and accepted by Go for TLS and for signing tokens.
_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
"""


def ensure_certs(directory: Path) -> Certs:
    """Create the CA, serving certificate and signing key in directory unless present."""
    certs = Certs(directory)
    if all(p.exists() for p in (certs.ca_cert, certs.server_cert, certs.service_account_key)):
        return certs
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        *_EC_KEY,
        "-keyout",
        certs.ca_key,
        "-out",
        certs.ca_cert,
        "-days",
        "3650",
        "-subj",
        "/CN=backstop-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    csr = directory / "apiserver.csr"
    _openssl(
        "req", *_EC_KEY, "-keyout", certs.server_key, "-out", csr, "-subj", "/CN=kube-apiserver"
    )
    extensions = directory / "apiserver.ext"
    extensions.write_text(_SERVER_EXTENSIONS)
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        certs.ca_cert,
        "-CAkey",
        certs.ca_key,
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        extensions,
        "-out",
        certs.server_cert,
    )
    _openssl(
        "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", certs.service_account_key
    )
    return certs


def _openssl(*args: object) -> None:
    """Run one openssl command, raising StackError with its message on failure."""
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"openssl {args[0]} failed: {result.stderr.strip()}")
