"""What ``streamd bench sip`` and ``streamd bench abuse`` share: a ``streamd run`` child with
``sources.sip`` on loopback, sipp calls streaming a clip, and the window lag and CPU figures
read from ``/v1/events`` and ``/proc``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

TICKS = os.sysconf("SC_CLK_TCK")
SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="bench call">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:bench@[local_ip]:[local_port]>;tag=[pid]b[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:bench@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=bench 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:bench@[local_ip]:[local_port]>;tag=[pid]b[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Content-Length: 0
]]></send>
  <nop><action><exec rtp_stream="clip.g711,1,0"/></action></nop>
  <pause/>
  <send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:bench@[local_ip]:[local_port]>;tag=[pid]b[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Content-Length: 0
]]></send>
  <recv response="200"/>
</scenario>
"""


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of a process, or of one of its threads (the event loop's is the pid)."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def g711_clip(path: str | None, seconds: float) -> bytes:
    """The clip as PCMU at 8 kHz, a whole number of 20 ms packets."""
    import soxr

    from streamd.codecs.g711 import ulaw_encode
    from streamd.pipeline.audio import load_audio

    n = int(seconds * 16000)
    if path:
        audio = load_audio(path)
        audio = np.tile(audio, n // len(audio) + 1)[:n]
    else:
        from streamd.export.probe_audio import speechlike

        audio = speechlike(n)
    narrow = np.clip(np.round(soxr.resample(audio, 16000, 8000) * 32768), -32768, 32767).astype(
        np.int16
    )
    coded = ulaw_encode(narrow)
    return coded[: len(coded) // 160 * 160]


class SipDaemon:
    """``streamd run`` in a child process, and a ``/v1/events`` reader that keeps receipt times."""

    def __init__(
        self, tmp: Path, args: argparse.Namespace, rtp_ports: tuple[int, int], max_calls: int
    ) -> None:
        import yaml

        self.http, self.sip = free_port(socket.SOCK_STREAM), free_port()
        cfg = {
            "server": {"port": self.http},
            "sources": {
                "webrtc": {"enabled": False},
                "max_streams": max_calls + 10,
                "sip": {
                    "enabled": True,
                    "port": self.sip,
                    "tcp": False,
                    "rtp_ports": list(rtp_ports),
                    "max_calls": max_calls,
                },
            },
            "model": {"dir": args.models_dir, "name": args.model, "providers": ["cpu"]},
            "store": {"path": str(tmp / f"events-{self.http}.db")},
            "logging": {"level": "warning"},
        }
        self.config = tmp / f"bench-{self.http}.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.log = tmp / f"daemon-{self.http}.log"
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.proc: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SipDaemon:
        with open(self.log, "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "streamd",
                "run",
                "-c",
                str(self.config),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        for _ in range(600):
            if self.proc.returncode is not None:
                raise RuntimeError(f"daemon exited: {self.log.read_text()[-2000:]}")
            try:
                await asyncio.to_thread(
                    urllib.request.urlopen, f"http://127.0.0.1:{self.http}/readyz", timeout=2
                )
                break
            except OSError:
                await asyncio.sleep(0.1)
        self._reader = asyncio.create_task(self._read())
        await asyncio.sleep(0.3)
        return self

    async def _read(self) -> None:
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{self.http}/v1/events", max_msg_size=0) as ws,
        ):
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.events.append((time.monotonic(), json.loads(msg.data)))

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/readyz", timeout=5) as r:
            return next(s for s in json.load(r)["sources"] if s["name"] == "sip")

    def cpu(self) -> tuple[float, float]:
        """CPU seconds of the whole daemon, and of its event loop thread (ingest, VAD, windows,
        events: everything but inference, which runs in onnxruntime's threads)."""
        return cpu_seconds(self.proc.pid), cpu_seconds(self.proc.pid, self.proc.pid)

    def of(self, service: str) -> dict[str, dict[str, Any]]:
        """Per stream of calls to ``service``: started receipt, window (receipt, end_s), summary."""
        out: dict[str, dict[str, Any]] = {}
        for t, e in self.events:
            sid = (e.get("stream") or {}).get("stream_id")
            if sid is None or f"sip:{service}@" not in e["stream"]["labels"].get("to", ""):
                continue
            s = out.setdefault(sid, {"started": None, "windows": [], "summary": None})
            if e["type"] == "stream.started":
                s["started"] = t
            elif e["type"] == "window.scored":
                s["windows"].append((t, e["window"]["end_s"]))
            elif e["type"] == "stream.ended":
                s["summary"] = e["summary"]
        return out

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def run_sipp(tmp: Path, daemon: SipDaemon, service: str, n: int, seconds: float) -> int:
    cmd = [
        "sipp",
        "-sf",
        str(tmp / "bench.xml"),
        "-s",
        service,
        "-d",
        str(int(seconds * 1000) + 300),
        "-l",
        str(n),
        "-m",
        str(n),
        "-r",
        str(min(n, 25)),
        "-mp",
        str(free_port()),
        "-nostdin",
        "-timeout",
        f"{int(seconds + 60)}s",
        "-timeout_error",
        f"127.0.0.1:{daemon.sip}",
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=tmp, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        return await asyncio.wait_for(proc.wait(), seconds + 90)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return -9


async def wait_until(pred: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def window_lags(streams: dict[str, dict[str, Any]]) -> list[float]:
    """Window lag in seconds, leaving out the windows scored at BYE (the last 0.5 s of a call)."""
    lags = []
    for s in streams.values():
        duration = (s["summary"] or {}).get("duration_s", float("inf"))
        lags += [
            t - s["started"] - end
            for t, end in s["windows"]
            if s["started"] and end < duration - 0.5
        ]
    return lags
