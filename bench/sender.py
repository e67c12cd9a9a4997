"""The storm's load: webhooks POSTed over a few connections, as fast as they are answered.

Run as its own process (`python -m bench.sender`, started by bench/storm.py): the bodies
come from a file, the token on standard input (never on the command line, where `ps` shows
it), the result as JSON on standard output.

One asyncio loop drives every connection with a minimal HTTP/1.1 client, so the sender
costs the shared cores as little as it can: the threaded `http.client` sender it replaced
used 0.6 of a core at 365 webhooks/s, CPU taken from the receiver it measured
(docs/benchmarks.md). Each request is timed from just before its bytes are written to the
end of its answer; a closed connection (gunicorn's sync workers close after every answer) is
opened again before the next request, as any HTTP client would.
"""

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

PATH = "/webhooks/alertmanager"
TIMEOUT = 10.0  # seconds one request may take before it counts as an error


class _Closed(Exception):
    """The server closed the connection before answering."""


def request_bytes(host: str, token: str, body: bytes) -> bytes:
    """One complete POST of `body`, ready to write."""
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Read one response: (status, body, whether the server closes the connection)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        raise _Closed() from None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return status, body, headers.get("connection", "").lower() == "close"


async def _send(url: str, token: str, bodies: list[bytes], connections: int, deadline: float):
    target = urlsplit(url)
    host = f"{target.hostname}:{target.port}"
    requests = [request_bytes(host, token, body) for body in bodies]
    results: list[tuple | None] = [None] * len(bodies)
    errors: list[str] = []
    pending = iter(range(len(bodies)))
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + deadline
    began = time.perf_counter()

    async def connection() -> None:
        reader = writer = None
        for i in pending:  # shared: each body is taken by exactly one connection
            if loop.time() >= stop_at:
                break
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(target.hostname, target.port)
                started = time.perf_counter()
                writer.write(requests[i])
                status, payload, close = await asyncio.wait_for(_answer(reader), TIMEOUT)
                elapsed = (time.perf_counter() - started) * 1000
            except (OSError, TimeoutError, _Closed, ValueError) as exc:
                errors.append(f"webhook {i}: {exc!r}")
                close = True
            else:
                counts = json.loads(payload) if status == 202 else {}
                results[i] = (
                    elapsed,
                    status,
                    counts.get("accepted", 0),
                    counts.get("duplicates", 0),
                    started - began,
                )
            if close and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return results, errors, time.perf_counter() - began


def send(url: str, token: str, bodies: list[bytes], connections: int, deadline: float) -> dict:
    """POST every body once over `connections` connections; stop at `deadline` seconds.
    Returns each request's latency (ms) and status, the answers' counts, and the slowest."""
    cpu = time.process_time()
    results, errors, seconds = asyncio.run(_send(url, token, bodies, connections, deadline))
    cpu = time.process_time() - cpu
    done = [r for r in results if r is not None]
    slowest = sorted((r[0], i, r[4]) for i, r in enumerate(results) if r is not None)
    slowest = slowest[-max(1, len(done) // 100) :]
    return {
        "seconds": round(seconds, 3),
        # The sender's own share of a core while it sent: what it took from the receiver.
        "cpu_cores": round(cpu / seconds, 3) if seconds else None,
        "latencies_ms": [r[0] for r in done],
        # The slowest 1 %: (latency ms, webhook index, ms into the storm when sent).
        "slowest": [(round(ms, 1), i, round(at * 1000)) for ms, i, at in reversed(slowest)],
        "statuses": dict(Counter(str(r[1]) for r in done)),
        "accepted": sum(r[2] for r in done),
        "duplicates": sum(r[3] for r in done),
        "unsent": len(bodies) - len(done),
        "errors": errors[:20],
        "error_count": len(errors),
    }


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m bench.sender", description=__doc__.split("\n")[0])
    cli.add_argument("--url", required=True)
    cli.add_argument("--bodies", type=Path, required=True, help="JSON list of webhook bodies")
    cli.add_argument("--connections", type=int, default=8)
    cli.add_argument("--deadline", type=float, default=300.0)
    args = cli.parse_args(argv)
    token = sys.stdin.readline().strip()
    bodies = [
        json.dumps(b, separators=(",", ":")).encode() for b in json.loads(args.bodies.read_text())
    ]
    json.dump(send(args.url, token, bodies, args.connections, args.deadline), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
