"""Running as a service: sd_notify over a real unix socket, watchdog keep-alives, SIGHUP log
reopening, SIGTERM, startup failures, and the shipped default config."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamd.app.service import SystemdNotifier, watchdog_interval
from streamd.config import Config, load_config
from streamd.events.store import EventStore

from tests.helpers.daemonproc import DaemonProc, free_port, speech_wav, write_config

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A receiving datagram socket in the abstract namespace, as systemd uses, and its
    $NOTIFY_SOCKET."""
    name = f"streamd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(0.2)
    yield sock, "@" + name
    sock.close()


def messages(sock: socket.socket, seconds: float, stop: str | None = None) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            continue
        out.append(dict(line.split("=", 1) for line in data.splitlines()))
        if stop is not None and stop in out[-1]:
            break
    return out


def test_notifier_path_and_abstract_sockets(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, address = notify_socket
    n = SystemdNotifier({"NOTIFY_SOCKET": address})
    assert n.enabled and n.notify("READY=1", "STATUS=hello")
    assert sock.recv(100) == b"READY=1\nSTATUS=hello"
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        assert SystemdNotifier({"NOTIFY_SOCKET": str(path)}).notify("WATCHDOG=1")
        assert s.recv(100) == b"WATCHDOG=1"
    off = SystemdNotifier({})
    assert not off.enabled and not off.notify("READY=1")
    assert not SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).notify(
        "READY=1"
    )  # never raises


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    import os

    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert (
        watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    )
    assert (
        watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    )  # meant for another process
    assert watchdog_interval({}) is None and watchdog_interval({"WATCHDOG_USEC": "x"}) is None


@pytest.mark.slow
def test_daemon_under_systemd_protocol(
    tiny_model_dir: Path, tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    """READY=1 only once it serves, WATCHDOG=1 from the loop, SIGHUP reopens the log, STOPPING=1."""
    sock, address = notify_socket
    port = free_port()
    log_file = tmp_path / "streamd.log"
    cfg = write_config(
        tmp_path / "c.yaml",
        tiny_model_dir,
        tmp_path / "e.db",
        port,
        logging={"file": str(log_file)},
    )
    with DaemonProc(cfg, port, env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "300000"}).start(
        wait_ready=False
    ) as d:
        first = messages(sock, 60, stop="READY")
        assert first and "READY" in first[-1], first
        ready = first[-1]
        assert (
            ready["STATUS"].startswith("ready")
            and f":{port}" in ready["STATUS"]
            and ready["MAINPID"].isdigit()
        )
        with urllib.request.urlopen(
            f"{d.url}/readyz", timeout=5
        ) as r:  # already listening at READY=1
            assert r.status == 200
        beats = [m for m in messages(sock, 1.5) if m.get("WATCHDOG") == "1"]
        assert len(beats) >= 4, beats  # every 0.15 s

        rotated = log_file.rename(tmp_path / "streamd.log.1")
        d.signal(signal.SIGHUP)
        for _ in range(100):
            if log_file.exists() and "SIGHUP" in log_file.read_text():
                break
            time.sleep(0.1)
        assert "SIGHUP: reopened" in log_file.read_text()  # by the handler or by SIGHUP
        assert "listening on" in rotated.read_text() and "listening on" not in log_file.read_text()

        d.signal(signal.SIGTERM)
        assert any("STOPPING" in m for m in messages(sock, 15, stop="STOPPING"))
        assert d.wait(20) == 0
    assert "stopped" in log_file.read_text()


def test_startup_failure_is_one_line_and_releases_the_store(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, tmp_path / "e.db", port)
        r = subprocess.run(
            [sys.executable, "-m", "streamd", "run", "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"server.host/server.port: cannot listen on 127.0.0.1:{port}" in r.stderr
    EventStore(tmp_path / "e.db").close()  # the failed daemon let go of the store


@pytest.mark.slow
async def test_grace_period_over_still_ends_every_stream(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import asyncio

    from streamd.app.daemon import Daemon
    from streamd.config import parse_config
    from streamd.pipeline.hub import HubObserver

    clip = speech_wav(tmp_path / "s.wav", 20.0)
    cfg = parse_config(
        {
            "server": {"enabled": False},
            "sources": {"files": [str(clip)], "webrtc": {"enabled": False}},
            "model": {
                "dir": str(tiny_model_dir),
                "batch_wait_ms": 2000,
            },  # scoring the rest outlasts the grace
            "store": {"path": str(tmp_path / "e.db")},
            "service": {"grace_s": 0.001},
        },
        environ={},
    )
    daemon = Daemon(cfg)
    await daemon.start()
    queued = asyncio.Event()

    class OnQueued(HubObserver):
        def window_queued(self, stream: object) -> None:
            queued.set()

    try:
        assert daemon.hub is not None
        daemon.hub.observers.append(OnQueued())
        await asyncio.wait_for(queued.wait(), 30)  # a window waits for its batch: stop now
        t0 = time.monotonic()
    finally:
        await daemon.stop()
    assert time.monotonic() - t0 < 1.0
    store = EventStore(tmp_path / "e.db", readonly=True)
    events = store.read_since(0, limit=1000)
    store.close()
    ended = [e for e in events if e["type"] == "stream.ended"]
    assert len(ended) == 1 and "grace period over" in ended[0]["summary"]["reason"]
    assert ended[0]["summary"]["windows"] == sum(e["type"] == "window.scored" for e in events)
    assert events[-1]["type"] == "daemon.status" and events[-1]["state"] == "stopped"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_default_config_lists_every_key_with_its_default() -> None:
    path = ROOT / "configs" / "default.yaml"
    listed = _flatten(yaml.safe_load(path.read_text()))
    defaults = _flatten(Config().model_dump(by_alias=True, mode="json"))
    assert sorted(listed) == sorted(defaults), set(listed) ^ set(defaults)
    assert load_config(path, environ={}).model_dump() == Config().model_dump()
    assert listed["model.name"] is None and listed["server.host"] == "127.0.0.1"
