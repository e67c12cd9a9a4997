"""A throwaway CA and a serving certificate for 127.0.0.1, made with the openssl CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from testbed.tls import issue_ca, issue_server_cert


@dataclass(frozen=True)
class Certificates:
    """Paths of the CA certificate clients trust and the server's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path) -> Certificates:
    """Create a CA and a certificate it signed for 127.0.0.1 and localhost in `directory`."""
    # A separate CA (not one self-signed leaf) passes OpenSSL's strict chain checks too.
    certs = Certificates(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    ca_key = directory / "ca.key"
    issue_ca(
        ca_key, certs.ca, subject="/CN=backstop-test-double-ca", days=2, key_usage="keyCertSign"
    )
    issue_server_cert(
        certs.key,
        certs.cert,
        ca_cert=certs.ca,
        ca_key=ca_key,
        subject="/CN=127.0.0.1",
        days=2,
        key_usage="digitalSignature",
    )
    return certs
