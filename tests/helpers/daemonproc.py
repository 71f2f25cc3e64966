"""Run the real daemon (``python -m streamd run``) on a free loopback port and talk to it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import yaml

from tests.helpers.common import write_wav

ROOT = Path(__file__).resolve().parents[2]
LIBRISPEECH = (
    ROOT.parent
    / "shared"
    / "data"
    / "resemble-ai__Resemblyzer"
    / "audio_data"
    / "librispeech_test-other"
)

Event = dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def speech_wav(path: Path, seconds: float, offset: int = 0) -> Path:
    """``seconds`` of real read speech from ../shared when present, else speech-like synthesis."""
    if path.exists():
        return path
    n = int(seconds * 16000)
    clips = sorted(p for p in LIBRISPEECH.rglob("*.flac")) if LIBRISPEECH.exists() else []
    if clips:
        from streamd.pipeline.audio import load_audio

        parts, total, i = [], 0, offset
        while total < n and i < offset + len(clips):
            parts.append(load_audio(clips[i % len(clips)]))
            total += len(parts[-1])
            i += 1
        audio = np.concatenate(parts)[:n]
    else:
        from streamd.export.probe_audio import speechlike

        audio = speechlike(n, seed=offset)
    return write_wav(path, audio, 16000)


def write_config(
    path: Path, models: Path, store: Path, port: int, **sections: dict[str, Any]
) -> Path:
    cfg: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "sources": {"webrtc": {"enabled": False}},
        "model": {"dir": str(models), "name": "tiny"},
        "store": {"path": str(store)},
        "service": {"grace_s": 10.0},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path.write_text(yaml.safe_dump(cfg))
    return path


class DaemonProc:
    """One ``streamd run`` subprocess; stderr goes to a file so a full pipe never blocks it."""

    def __init__(self, config: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.port = port
        self.log_path = config.with_suffix(f".{port}.{time.monotonic_ns()}.log")
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("STREAMD_", "NOTIFY_SOCKET", "WATCHDOG_"))
        }
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True, timeout: float = 60) -> DaemonProc:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamd", "run", "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=self.env,
                cwd=self.config.parent,
            )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.url + "/readyz", timeout=2) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"daemon not ready within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def __enter__(self) -> DaemonProc:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


async def collect(
    url: str,
    until: Callable[[list[Event]], bool],
    timeout: float = 60,
    into: list[Event] | None = None,
    **query: str,
) -> tuple[list[Event], int | None]:
    """Events from ``/v1/events`` until ``until(events)`` or the server closes; (events, close
    code).

    ``into``: a list to append to, so a test can watch events arrive while this runs.
    """
    events: list[Event] = [] if into is None else into
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{url}/v1/events?{qs}") as ws,
    ):
        deadline = asyncio.get_running_loop().time() + timeout
        while not until(events):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s with {len(events)} events")
            msg = await ws.receive(timeout=remaining)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return events, ws.close_code
            events.append(json.loads(msg.data))
    return events, None


def ended_streams(n: int) -> Callable[[list[Event]], bool]:
    return lambda events: sum(e["type"] == "stream.ended" for e in events) >= n


def contiguous(ids: list[int]) -> bool:
    return ids == list(range(ids[0], ids[0] + len(ids))) if ids else True
