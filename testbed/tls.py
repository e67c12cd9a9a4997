"""Throwaway TLS material made with the openssl CLI: a CA, and server certificates it signs
for 127.0.0.1 and localhost. Used by the Kubernetes test control plane and the PagerDuty
double."""

import subprocess
from pathlib import Path

# EC keys are generated in milliseconds, and Go and OpenSSL accept them for TLS and signing.
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, {key_usage}
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
"""


def openssl(*args: object, error: type[Exception] = RuntimeError) -> None:
    """Run one openssl command, raising `error` with its message on failure."""
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise error(f"openssl {args[0]} failed: {result.stderr.strip()}")


def issue_ca(
    key: Path,
    cert: Path,
    *,
    subject: str,
    days: int,
    key_usage: str,
    error: type[Exception] = RuntimeError,
) -> None:
    """A self-signed CA certificate and its key."""
    openssl(
        "req", "-x509", *EC_KEY, "-keyout", key, "-out", cert, "-days", days, "-subj", subject,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", f"keyUsage=critical,{key_usage}",
        error=error,
    )  # fmt: skip


def issue_server_cert(
    key: Path,
    cert: Path,
    *,
    ca_cert: Path,
    ca_key: Path,
    subject: str,
    days: int,
    key_usage: str,
    error: type[Exception] = RuntimeError,
) -> None:
    """A serving certificate for 127.0.0.1 and localhost, signed by the CA. The request and
    extension files are left beside the key."""
    csr, extensions = key.with_suffix(".csr"), key.with_suffix(".ext")
    openssl("req", *EC_KEY, "-keyout", key, "-out", csr, "-subj", subject, error=error)
    extensions.write_text(_SERVER_EXTENSIONS.format(key_usage=key_usage))
    openssl(
        "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
        "-days", days, "-extfile", extensions, "-out", cert,
        error=error,
    )  # fmt: skip
