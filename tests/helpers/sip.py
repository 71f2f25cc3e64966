"""Real peers for the SIP/RTP tests (not a test module): sipp, a Python UAC and an RTP sender.

sipp runs as a subprocess in a temporary folder (its logs and the G.711 files it streams go
there) with a timeout on every run; the Python UAC and RTP sender use real loopback sockets, for
what sipp cannot do on purpose (loss, reordering, duplicates, junk, a peer that never ACKs).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamd.app.daemon import Daemon
from streamd.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from streamd.protocols.rtp import build_rtp
from streamd.protocols.sip.message import SipRequest, SipResponse, parse_message
from streamd.protocols.sip.sdp import parse_sdp

from tests.helpers.feeds import feed_daemon, narrowband, source, speech
from tests.helpers.webrtc import EventsClient

SCENARIOS = Path(__file__).resolve().parents[1] / "sipp"
SIPP = shutil.which("sipp")
LAWS = {"PCMU": (0, ulaw_encode, ulaw_decode), "PCMA": (8, alaw_encode, alaw_decode)}


def need_sipp() -> str:
    if SIPP is None:
        pytest.skip("sipp is not installed (Debian: apt-get install sip-tester)")
    return SIPP


def free_udp_port(even: bool = False) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not even or port % 2 == 0:
            return port
    raise RuntimeError("no free even UDP port")


# -- audio --------------------------------------------------------------------------------------


def g711_speech(
    seconds: float, codec: str, offset: int = 0
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Real speech as G.711 bytes (a whole number of 20 ms packets), what decoding them gives
    (8 kHz int16: what the daemon should score), and the clean 16 kHz original."""
    clean = speech(seconds, offset)
    _, encode, decode = LAWS[codec]
    coded = encode(narrowband(clean))
    coded = coded[: len(coded) // 160 * 160]
    return coded, decode(coded), clean


# -- the daemon -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sip_daemon(
    models: Path, tmp: Path, **sip: Any
) -> AsyncIterator[tuple[Daemon, EventsClient, Any]]:
    """An in-process daemon with ``sources.sip`` on a free loopback port, its events, its source."""
    lo = 20000 + 2 * (free_udp_port() % 10000)
    cfg = {"port": 0, "rtp_ports": [lo, lo + 199], "rtp_timeout_s": 5.0, **sip}
    async with feed_daemon(models, tmp, sip=cfg) as (daemon, events):
        yield daemon, events, source(daemon, "sip")


def by_id(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: e["id"])


# -- sipp ---------------------------------------------------------------------------------------


async def run_sipp(
    cwd: Path,
    port: int,
    *args: str,
    scenario: str | None = None,
    timeout: float = 40,
    subs: dict[str, str] | None = None,
) -> tuple[int, str]:
    """One sipp run in the foreground, killed after ``timeout``; (exit code, screen + errors).

    ``subs`` replaces ``@NAME@`` placeholders in the scenario (written to ``cwd``). sipp exits 0
    when every call succeeded, 1 when one failed; ``-timeout_error`` makes a run that times out
    count as failed rather than as a clean stop."""
    sipp = need_sipp()
    files: list[str] = []
    if scenario is not None:
        text = (SCENARIOS / scenario).read_text()
        for name, value in (subs or {}).items():
            text = text.replace(f"@{name}@", value)
        (cwd / scenario).write_text(text)
        files = ["-sf", str(cwd / scenario)]
    cmd = [
        sipp,
        *files,
        *args,
        "-nostdin",
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-trace_err",
        "-error_file",
        str(cwd / "sipp-errors.log"),
        f"127.0.0.1:{port}",
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout + 15)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"sipp did not finish within {timeout + 15} s: {cmd}") from None
    errors = cwd / "sipp-errors.log"
    text = out.decode(errors="replace") + (
        errors.read_text(errors="replace") if errors.exists() else ""
    )
    return int(proc.returncode or 0), text


# -- a Python UAC over UDP ----------------------------------------------------------------------

OFFER = (
    "v=0\r\no=uac 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP {pts} 101\r\n{rtpmaps}a=rtpmap:101 telephone-event/8000\r\n"
    "a=ptime:20\r\na={direction}\r\n"
)
RTPMAPS = {0: "PCMU/8000", 8: "PCMA/8000", 18: "G729/8000"}


def offer(port: int, pts: tuple[int, ...] = (0,), direction: str = "sendrecv") -> str:
    rtpmaps = "".join(f"a=rtpmap:{pt} {RTPMAPS[pt]}\r\n" for pt in pts)
    return OFFER.format(
        port=port, pts=" ".join(map(str, pts)), rtpmaps=rtpmaps, direction=direction
    )


class Uac(asyncio.DatagramProtocol):
    """A minimal SIP user agent client: sends what a test writes, keeps what comes back."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[SipRequest | SipResponse] = []
        self.raw: list[bytes] = []
        self._changed = asyncio.Event()
        self.port = 0
        self.server = ("127.0.0.1", 5060)
        self.cseq = 0
        self.tag = f"uac{time.monotonic_ns() % 10**8}"

    @classmethod
    async def open(cls, server_port: int, host: str = "127.0.0.1") -> Uac:
        """A UAC on ``host`` (another loopback address tests allow_from) calling 127.0.0.1."""
        loop = asyncio.get_running_loop()
        _, uac = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        uac.server = ("127.0.0.1", server_port)
        return uac

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.raw.append(data)
        with contextlib.suppress(Exception):
            self.received.append(parse_message(data))
        self._changed.set()

    def send(self, data: bytes | str) -> None:
        assert self.transport is not None
        self.transport.sendto(data.encode() if isinstance(data, str) else data, self.server)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def wait(
        self, pred: Callable[[SipRequest | SipResponse], bool], timeout: float = 5.0
    ) -> Any:
        """The first message received (so far or later) that matches ``pred``."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.received:
                if pred(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no matching SIP message in {timeout} s; got "
                    f"{[m.start_line() for m in self.received]}"
                )
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def response(
        self,
        call_id: str,
        method: str,
        status: int | None = None,
        timeout: float = 5.0,
        branch: str | None = None,
    ) -> SipResponse:
        def match(m: Any) -> bool:
            return (
                isinstance(m, SipResponse)
                and m.call_id == call_id
                and m.cseq[1] == method
                and ((status is None and m.status >= 200) or m.status == status)
                and (branch is None or m.branch == branch)
            )

        return await self.wait(match, timeout)  # type: ignore[no-any-return]

    def request(
        self,
        method: str,
        call_id: str,
        *,
        to_tag: str | None = None,
        body: str = "",
        branch: str | None = None,
        cseq: int | None = None,
        extra: str = "",
        content_type: str = "application/sdp",
        uri: str = "sip:service@127.0.0.1",
    ) -> bytes:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        to = "<sip:service@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        ctype = f"Content-Type: {content_type}\r\n" if body else ""
        text = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};"
            f"branch={branch or 'z9hG4bK' + str(time.monotonic_ns())};rport\r\n"
            f'From: "UAC" <sip:uac@127.0.0.1:{self.port}>;tag={self.tag}\r\n'
            f"To: {to}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:uac@127.0.0.1:{self.port}>\r\nMax-Forwards: 70\r\n"
            f"{extra}{ctype}Content-Length: {len(body.encode())}\r\n\r\n{body}"
        )
        return text.encode()

    async def ask(self, method: str, call_id: str, **kw: Any) -> SipResponse:
        """One request and its final response; a non-2xx to INVITE is ACKed in its transaction."""
        branch = kw.pop("branch", None) or f"z9hG4bK{time.monotonic_ns()}"
        request = self.request(method, call_id, branch=branch, **kw)
        self.send(request)
        final = await self.response(call_id, method, branch=branch)
        if method == "INVITE" and final.status >= 300:
            number = parse_message(request).cseq[0]
            self.send(self.request("ACK", call_id, to_tag=final.to_tag, branch=branch, cseq=number))
        return final

    async def call(self, call_id: str, body: str, **kw: Any) -> SipResponse:
        """INVITE, wait for the final response, ACK a 2xx; the final response."""
        invite = self.request("INVITE", call_id, body=body, **kw)
        self.send(invite)
        final = await self.response(call_id, "INVITE")
        if final.status < 300:
            self.send(
                self.request(
                    "ACK", call_id, to_tag=final.to_tag, cseq=parse_message(invite).cseq[0]
                )
            )
        return final


def answer_port(response: SipResponse, index: int = 0) -> int:
    return parse_sdp(response.body).media[index].port


# -- an RTP sender ------------------------------------------------------------------------------


def rtp_packets(
    coded: bytes,
    pt: int,
    ssrc: int = 0x5EED,
    seq: int = 65500,
    ts: int = 4294960000,
    ptime: int = 160,
) -> list[bytes]:
    """20 ms packets starting near the sequence and timestamp wrap, so the wraps are crossed."""
    return [
        build_rtp(
            pt, seq + i, ts + i * ptime, ssrc, coded[i * ptime : (i + 1) * ptime], marker=i == 0
        )
        for i in range(len(coded) // ptime)
    ]


async def send_rtp(
    packets: list[bytes], port: int, interval: float = 0.02, sock: socket.socket | None = None
) -> None:
    """Send from one UDP socket, paced at ``interval`` (20 ms is real time)."""
    own = sock is None
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic()
    try:
        for i, packet in enumerate(packets):
            s.sendto(packet, ("127.0.0.1", port))
            delay = start + (i + 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    finally:
        if own:
            s.close()


def header(message: SipRequest | SipResponse, name: str) -> str:
    return message.headers.get(name) or ""


def reason_of(raw: bytes) -> str:
    match = re.match(rb"SIP/2\.0 \d{3} (.*)\r\n", raw)
    return match.group(1).decode() if match else ""
