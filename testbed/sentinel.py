"""A real Redis Sentinel group for the tests: a master, one replica and three sentinels
(quorum 2) on free loopback ports, with short failure detection, each stopped by its pid.

Sentinels are Debian's `redis-sentinel` (package redis-sentinel), or `redis-server
--sentinel` when only a redis-server is at hand. `failover()` asks the sentinels for a
manual failover (SENTINEL FAILOVER); `kill_master()` SIGKILLs the master, so the sentinels
must notice it is gone and promote the replica themselves.
"""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import redis

from core.connection import redis_server_binary
from testbed.doubles.tls import Certificates
from testbed.kube.procs import free_ports
from testbed.processes import launch, poll, terminate, wait_ready

SERVICE = "backstop"


def sentinel_command() -> list[str]:
    """How to run a sentinel: Debian's redis-sentinel, else redis-server in sentinel mode."""
    found = shutil.which("redis-sentinel")
    return [found] if found else [redis_server_binary(), "--sentinel"]


class SentinelGroup:
    """Two redis-servers (master, replica) and three sentinels monitoring them as SERVICE."""

    def __init__(
        self,
        directory: Path,
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
        tls: Certificates | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 4000,
    ):
        self.directory = Path(directory)
        self.password = password
        self.sentinel_password = sentinel_password
        self.tls = tls
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        ports = free_ports(5)
        self.server_ports, self.sentinel_ports = ports[:2], ports[2:]
        self.processes: dict[int, subprocess.Popen] = {}

    # -- addresses and clients ---------------------------------------------------------------

    def url(self, db: int = 0, **options: str) -> str:
        """The Backstop REDIS_URL of this group (query `options` appended as given)."""
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        if self.sentinel_password:
            options = {"sentinel_password": self.sentinel_password, **options}
        if self.tls:
            options = {"ssl_ca_certs": str(self.tls.ca), **options}
        query = "&".join(f"{name}={value}" for name, value in options.items())
        return f"{scheme}://{auth}{hosts}/{SERVICE}/{db}" + (f"?{query}" if query else "")

    def server(self, port: int) -> redis.Redis:
        """A direct client of one redis-server of the group (not through the sentinels)."""
        return redis.Redis(
            "127.0.0.1", port, password=self.password, socket_timeout=5, **self._client_tls()
        )

    def sentinel(self, port: int) -> redis.Redis:
        """A direct client of one sentinel."""
        return redis.Redis(
            "127.0.0.1",
            port,
            password=self.sentinel_password,
            socket_timeout=5,
            **self._client_tls(),
        )

    def master_port(self) -> int:
        """The port of the master as the first reachable sentinel names it."""
        for port in self.sentinel_ports:
            try:
                _, master = self.sentinel(port).sentinel_get_master_addr_by_name(SERVICE)
                return int(master)
            except redis.exceptions.ConnectionError:
                continue
        raise RuntimeError("no sentinel answers")

    def replica_port(self) -> int:
        """The port of the server that is not the master."""
        master = self.master_port()
        return next(port for port in self.server_ports if port != master)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> "SentinelGroup":
        """Start both servers and the sentinels; return once replication runs and every
        sentinel knows the replica and the two other sentinels."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            master, replica = self.server_ports
            self._start_server(master, timeout=timeout)
            self._start_server(replica, replica_of=master, timeout=timeout)
            for port in self.sentinel_ports:
                self._start_sentinel(port, master, timeout=timeout)
            self.wait_settled(master, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process of the group by its pid."""
        for process in self.processes.values():
            terminate(process, timeout=10)

    def __enter__(self) -> "SentinelGroup":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------------

    def failover(self, timeout: float = 30.0) -> tuple[int, int]:
        """SENTINEL FAILOVER: promote the replica; return (old, new) master ports once the
        sentinels agree and the old master replicates from the new one."""
        old = self.master_port()
        self.sentinel(self.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", SERVICE)
        new = self._wait_new_master(old, timeout)
        self.wait_settled(new, timeout=timeout)
        return old, new

    def kill_master(self) -> int:
        """SIGKILL the master's process (no shutdown, no last write); return its port."""
        port = self.master_port()
        process = self.processes[port]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return port

    def wait_promoted(self, old: int, timeout: float = 30.0) -> int:
        """Wait until every sentinel names a master other than `old`; return its port."""
        return self._wait_new_master(old, timeout)

    def restart_server(self, port: int, timeout: float = 30.0) -> None:
        """Start a stopped server again on its port; the sentinels make it a replica."""
        self._start_server(port, timeout=timeout)

    def wait_settled(self, master: int, timeout: float = 30.0) -> None:
        """Wait until the other server replicates from `master` and every sentinel names
        `master`, sees that replica up, and knows both other sentinels."""
        replica = next(port for port in self.server_ports if port != master)
        poll(lambda: self._replicating(replica, master), timeout=timeout, interval=0.1)
        for port in self.sentinel_ports:
            poll(lambda p=port: self._sentinel_settled(p, master, replica), timeout=timeout)

    # -- internals ---------------------------------------------------------------------------

    def _client_tls(self) -> dict:
        if not self.tls:
            return {}
        return {"ssl": True, "ssl_ca_certs": str(self.tls.ca)}

    def _start_server(self, port: int, *, replica_of: int | None = None, timeout: float) -> None:
        lines = [
            "bind 127.0.0.1",
            f"dir {self.directory}",
            'save ""',
            "appendonly no",
            f"dbfilename dump-{port}.rdb",
            "daemonize no",
            "protected-mode yes",
            f"logfile {self.directory / f'redis-{port}.log'}",
        ]
        lines += self._listen(port)
        if self.password:  # masterauth too: after a failover the master becomes a replica
            lines += [f"requirepass {self.password}", f"masterauth {self.password}"]
        if replica_of:
            lines.append(f"replicaof 127.0.0.1 {replica_of}")
        config = self.directory / f"redis-{port}.conf"
        config.write_text("\n".join(lines) + "\n")
        log = self.directory / f"redis-{port}.out"
        process = launch([redis_server_binary(), str(config)], log)
        self.processes[port] = process
        wait_ready(
            process, lambda: self._answers(self.server(port)), name=f"redis {port}", log=log,
            timeout=timeout,
        )  # fmt: skip

    def _start_sentinel(self, port: int, master: int, *, timeout: float) -> None:
        lines = [
            "bind 127.0.0.1",
            f"dir {self.directory}",
            "daemonize no",
            f"logfile {self.directory / f'sentinel-{port}.log'}",
            *self._listen(port),
            f"sentinel monitor {SERVICE} 127.0.0.1 {master} 2",
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
            f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {SERVICE} {self.password}")
        if self.sentinel_password:  # sentinels authenticate to each other with it too
            lines += [
                f"requirepass {self.sentinel_password}",
                f"sentinel sentinel-pass {self.sentinel_password}",
            ]
        # A sentinel rewrites its configuration file: it must be its own, and writable.
        config = self.directory / f"sentinel-{port}.conf"
        config.write_text("\n".join(lines) + "\n")
        log = self.directory / f"sentinel-{port}.out"
        process = launch([*sentinel_command(), str(config)], log)
        self.processes[port] = process
        wait_ready(
            process, lambda: self._answers(self.sentinel(port)), name=f"sentinel {port}",
            log=log, timeout=timeout,
        )  # fmt: skip

    def _listen(self, port: int) -> list[str]:
        """The node listens on `port`: plain TCP, or TLS only (and then replicates, and
        sentinels talk to the servers and to each other, over TLS too)."""
        if not self.tls:
            return [f"port {port}"]
        return [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {self.tls.cert}",
            f"tls-key-file {self.tls.key}",
            f"tls-ca-cert-file {self.tls.ca}",
            "tls-auth-clients no",
            "tls-replication yes",
        ]

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.RedisError:
            return False
        finally:
            client.close()

    def _replicating(self, replica: int, master: int) -> bool:
        try:
            info = self.server(replica).info("replication")
        except redis.exceptions.RedisError:
            return False
        return (
            info.get("role") == "slave"
            and int(info.get("master_port", 0)) == master
            and info.get("master_link_status") == "up"
        )

    def _sentinel_settled(self, port: int, master: int, replica: int) -> bool:
        try:
            client = self.sentinel(port)
            state = client.sentinel_master(SERVICE)
            replicas = client.sentinel_slaves(SERVICE)
        except redis.exceptions.RedisError:
            return False
        return (
            int(state["port"]) == master
            and state["num-other-sentinels"] == 2
            and any(
                int(r["port"]) == replica and not r["is_sdown"] and r.get("master-link-status")
                == "ok" for r in replicas
            )
        )  # fmt: skip

    def _wait_new_master(self, old: int, timeout: float) -> int:
        def agreed() -> int | None:
            named = set()
            for port in self.sentinel_ports:
                try:
                    _, master = self.sentinel(port).sentinel_get_master_addr_by_name(SERVICE)
                except redis.exceptions.RedisError:
                    return None
                named.add(int(master))
            return named.pop() if len(named) == 1 and old not in named else None

        return poll(agreed, timeout=timeout, interval=0.1)
