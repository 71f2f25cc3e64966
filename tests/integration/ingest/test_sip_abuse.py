"""Issue 13's SIP/RTP attacks against a real daemon on 127.0.0.1, each bounded in count and time,
while a live call from the allowed SBC (127.0.0.1) streams: the live call is scored exactly as
its clean audio (nothing lost, nothing delayed out of order) and the right counters move.

The attacker is 127.0.0.2 (outside ``allow_from``) unless the attack needs an allowed peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from streamd.protocols.rtp import build_rtp

from tests.helpers.feeds import assert_same_windows, of, reference, windows
from tests.helpers.sip import (
    Uac,
    answer_port,
    g711_speech,
    offer,
    rtp_packets,
    send_rtp,
    sip_daemon,
)

pytestmark = pytest.mark.slow

STRANGER = "127.0.0.2"


def stranger_invite(n: int, size: int = 0) -> bytes:
    pad = f"X-Pad: {'p' * size}\r\n" if size else ""
    return (
        f"INVITE sip:service@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {STRANGER}:5099;branch=z9hG4bKs{n};rport\r\n"
        f"From: <sip:x@{STRANGER}>;tag=s{n}\r\nTo: <sip:service@127.0.0.1>\r\n"
        f"Call-ID: stranger-{n}\r\nCSeq: 1 INVITE\r\n{pad}Content-Length: 0\r\n\r\n"
    ).encode()


async def live_call(
    daemon: Any, events: Any, sip: Any, attack: Callable[[int, socket.socket], Awaitable[None]]
) -> dict[str, Any]:
    """A 6 s call from 127.0.0.1 in real time while ``attack(rtp_port, rtp_socket)`` runs; its
    windows must equal ``streamd score`` on its audio. Returns the source's status after."""
    coded, pcm, _ = g711_speech(6.0, "PCMU", offset=2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        uac = await Uac.open(sip.port)
        ok = await uac.call("live", offer(sock.getsockname()[1]))
        assert ok.status == 200, ok.start_line()
        port = answer_port(ok)
        await asyncio.gather(send_rtp(rtp_packets(coded, 0), port, sock=sock), attack(port, sock))
        uac.send(uac.request("BYE", "live", to_tag=ok.to_tag))
        assert (await uac.response("live", "BYE")).status == 200
        uac.close()
    await events.wait_for(
        lambda ev: any(e["stream"]["call_id"] == "live" for e in of(ev, "stream.ended")), 20
    )
    ref = await reference(daemon, {"clean": (pcm, 8000)})
    (end,) = [e for e in of(events.events, "stream.ended") if e["stream"]["call_id"] == "live"]
    assert_same_windows(windows(events.events, end["stream"]["stream_id"]), ref["clean"])
    assert end["summary"]["frames_lost"] == 0
    status: dict[str, Any] = sip.status()
    return status


async def test_strangers_are_refused_before_parsing_and_create_no_state(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """60 KB datagrams, 2,500 INVITEs and 100 idle TCP connections from outside allow_from."""
    async with sip_daemon(tiny_model_dir, tmp_path, tcp_max_connections=50) as (d, events, sip):
        held: list[socket.socket] = []

        async def attack(port: int, sock: socket.socket) -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((STRANGER, 0))
                for n in range(2500):
                    big = n % 25 == 0  # 100 of them are 60 KB
                    s.sendto(stranger_invite(n, 60_000 if big else 0), ("127.0.0.1", sip.port))
                    if n % 50 == 0:
                        await asyncio.sleep(0.02)
            for _ in range(100):
                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                c.bind((STRANGER, 0))
                c.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    c.connect(("127.0.0.1", sip.port))
                held.append(c)
            await asyncio.sleep(0.5)

        status = await live_call(d, events, sip, attack)
        # the SBC still gets in over TCP: strangers' connections were closed at accept
        reader, writer = await asyncio.open_connection("127.0.0.1", sip.port)
        uac = await Uac.open(sip.port)
        writer.write(uac.request("OPTIONS", "tcp-ok").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"SIP/2.0 200"), head[:80]
        writer.close()
        uac.close()
        for c in held:
            c.close()
        s = status["sip"]
        assert s["refused"] == 2500 and s["refused_unanswered"] >= 100
        assert s["responses"].get(403, 0) == 2500 - s["refused_unanswered"]
        assert s["tcp_refused_source"] == 100 and s["junk"] == 0
        assert len(sip.uas.transactions.items) < 10  # the live call's, never the strangers'


async def test_quotas_per_source(tiny_model_dir: Path, tmp_path: Path) -> None:
    """500 inactive m-lines in one INVITE, more calls than the per-source quota, more TCP
    connections than the per-source quota, an idle TCP connection, a stream held too long."""
    cfg = {
        "max_calls_per_source": 2,
        "max_media_per_call": 4,
        "tcp_max_per_source": 3,
        "tcp_idle_s": 1.0,
        "hold_timeout_s": 1.5,
    }
    async with sip_daemon(tiny_model_dir, tmp_path, **cfg) as (d, events, sip):

        async def attack(port: int, sock: socket.socket) -> None:
            uac = await Uac.open(sip.port)
            many = offer(6000) + "m=audio 6002 RTP/AVP 0\r\na=inactive\r\n" * 500
            assert (await uac.call("mlines", many)).status == 488
            held = await uac.call("held", offer(6004, direction="inactive"))
            assert held.status == 200  # the live call and this one: the quota of 2
            assert (await uac.call("third", offer(6006))).status == 486
            conns = [await asyncio.open_connection("127.0.0.1", sip.port) for _ in range(4)]
            await asyncio.sleep(0.2)
            assert sip.status()["sip"]["tcp_open"] == 3
            await asyncio.sleep(2.5)  # idle: closed after tcp_idle_s; held: ended at hold_timeout_s
            assert sip.status()["sip"]["tcp_open"] == 0
            for _, w in conns:
                w.close()
            bye = await uac.wait(lambda m: getattr(m, "method", "") == "BYE", 5)
            assert bye.call_id == "held"
            uac.close()

        status = await live_call(d, events, sip, attack)
        s, rtp = status["sip"], status["rtp"]
        assert s["too_many_media"] == 1 and s["over_source_calls"] == 1
        assert s["tcp_refused"] == 1 and s["tcp_idle_closed"] == 3
        assert rtp["hold_timeouts"] == 1
        held_end = [
            e for e in of(events.events, "stream.ended") if e["stream"]["call_id"] == "held"
        ]
        assert held_end and held_end[0]["summary"]["reason"] == "hold timeout"
        assert status["rtp_ports_in_use"] == 0 and status["calls"] == 0


async def test_rtp_latch_is_not_hijacked(tiny_model_dir: Path, tmp_path: Path) -> None:
    """After 2.5 s of silence another allowed address sends with a new SSRC: refused; then the
    same SSRC continuing the sequence (a failover): taken."""
    coded, _, _ = g711_speech(2.0, "PCMU", offset=3)
    first, rest = (
        rtp_packets(coded, 0, ssrc=0xAA, seq=100)[:50],
        rtp_packets(coded, 0, ssrc=0xAA, seq=100)[50:],
    )
    async with sip_daemon(tiny_model_dir, tmp_path) as (_, _events, sip):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
        ):
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            uac = await Uac.open(sip.port)
            ok = await uac.call("latch", offer(a.getsockname()[1]))
            port = answer_port(ok)
            await send_rtp(first, port, sock=a)
            await asyncio.sleep(2.5)
            hijack = [
                build_rtp(0, 150 + i, 8000 + 160 * i, 0xBAD, b"\xff" * 160) for i in range(20)
            ]
            await send_rtp(hijack, port, sock=b)
            rtp = sip.status()["rtp"]
            assert rtp["hijack_refused"] == 20 and rtp["latches"] == 1
            await send_rtp(rest, port, sock=b)  # failover: same SSRC, sequence continues
            rtp = sip.status()["rtp"]
            assert rtp["latches"] == 2 and rtp["hijack_refused"] == 20
            uac.send(uac.request("BYE", "latch", to_tag=ok.to_tag))
            assert (await uac.response("latch", "BYE")).status == 200
            uac.close()
