"""A real 3-node ``nats-server`` cluster with JetStream on 127.0.0.1 ports, for tests and benches.

Each node has its own store dir, so a node killed with SIGKILL and started again rejoins with its
data, as in production. Every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.helpers.daemonproc import free_port

NATS_SERVER = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
)


class NatsCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        self.size = size
        self.client_ports = [free_port() for _ in range(size)]
        self.route_ports = [free_port() for _ in range(size)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size
        for i in range(size):
            self._write_config(i)

    def name(self, i: int) -> str:
        return f"n{i}"

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.client_ports]

    def _write_config(self, i: int) -> None:
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.route_ports)
        (self.root / f"{self.name(i)}.conf").write_text(
            f"""server_name: {self.name(i)}
listen: 127.0.0.1:{self.client_ports[i]}
jetstream {{
  store_dir: "{self.root / self.name(i)}"
  max_memory_store: 64MB
  max_file_store: 1GB
}}
cluster {{
  name: streamd-test
  listen: 127.0.0.1:{self.route_ports[i]}
  routes: [{routes}]
}}
"""
        )

    def start(self, i: int | None = None) -> None:
        for j in range(self.size) if i is None else [i]:
            if self.procs[j] is not None and self.procs[j].poll() is None:  # type: ignore[union-attr]
                continue
            assert NATS_SERVER is not None
            log = open(self.root / f"{self.name(j)}.log", "ab")  # noqa: SIM115 - child owns it
            self.procs[j] = subprocess.Popen(
                [NATS_SERVER, "-c", str(self.root / f"{self.name(j)}.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(15)

    def stop(self) -> None:
        for i in range(self.size):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.kill(i, signal.SIGTERM)
            proc = self.procs[i]
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)

    def index_of(self, server_name: str) -> int:
        return [self.name(i) for i in range(self.size)].index(server_name)

    def log(self, i: int) -> str:
        p = self.root / f"{self.name(i)}.log"
        return p.read_text(errors="replace")[-4000:] if p.exists() else ""


async def connect(urls: list[str]) -> Any:
    import nats

    return await nats.connect(
        servers=urls, connect_timeout=2, max_reconnect_attempts=-1, reconnect_time_wait=0.5
    )


async def wait_jetstream(urls: list[str], timeout: float = 30) -> None:
    """Until the cluster has a JetStream meta leader (account info answers)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            nc = await connect(urls)
            try:
                await nc.jetstream(timeout=2).account_info()
                return
            finally:
                await nc.close()
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.3)
    raise AssertionError(f"JetStream not ready within {timeout} s: {last!r}")


async def retry(coro_fn: Any, timeout: float = 30, what: str = "JetStream call") -> Any:
    """Retry a JetStream API call through leader elections (ServiceUnavailable, timeouts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await coro_fn()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def stream_messages(urls: list[str], stream: str) -> list[tuple[int, str, dict[str, Any]]]:
    """``(seq, Nats-Msg-Id, event)`` of every message in the stream, by sequence."""
    nc = await connect(urls)
    try:
        js = nc.jetstream(timeout=3)
        info = await retry(lambda: js.stream_info(stream))
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await retry(lambda s=seq: js.get_msg(stream, s))
            out.append((seq, (msg.headers or {}).get("Nats-Msg-Id", ""), json.loads(msg.data)))
        return out
    finally:
        await nc.close()
