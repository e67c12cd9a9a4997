"""A throwaway CA and a serving certificate for 127.0.0.1, made with the openssl CLI."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# EC keys are generated in milliseconds, so every double can have its own CA.
_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
"""


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
    _openssl(
        "req",
        "-x509",
        *_EC_KEY,
        "-keyout",
        ca_key,
        "-out",
        certs.ca,
        "-days",
        "2",
        "-subj",
        "/CN=backstop-test-double-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    )
    csr = directory / "server.csr"
    _openssl("req", *_EC_KEY, "-keyout", certs.key, "-out", csr, "-subj", "/CN=127.0.0.1")
    extensions = directory / "server.ext"
    extensions.write_text(_SERVER_EXTENSIONS)
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        certs.ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        extensions,
        "-out",
        certs.cert,
    )
    return certs


def _openssl(*args: object) -> None:
    """Run one openssl command, raising RuntimeError with its message on failure."""
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")
