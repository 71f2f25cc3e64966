"""Crafted RTP from Python over real UDP sockets into a daemon's SIP call.

The call is set up by a Python UAC; the media is built packet by packet so loss, reordering,
duplicates, DTMF, a sender restart and junk are exactly known, and the daemon's window scores
are compared with ``streamd score`` on the audio it should have heard (silence where packets
were lost).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamd.protocols.rtp import build_rtp
from streamd.protocols.sip.message import SipRequest

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


def shuffled(n: int, lost: set[int], every: int = 17) -> tuple[list[int], int, int]:
    """Send order for ``n`` packets: ``lost`` left out, neighbours swapped and one packet
    resent every ``every``; (order, swaps, duplicates)."""
    order = [i for i in range(n) if i not in lost]
    swaps = dups = 0
    for k in range(5, len(order) - 3, every):
        order[k], order[k + 1] = order[k + 1], order[k]
        swaps += 1
        order.insert(k + 3, order[k])
        dups += 1
    return order, swaps, dups


async def start_call(uac: Uac, call_id: str, rtp_port: int) -> int:
    ok = await uac.call(call_id, offer(rtp_port))
    assert ok.status == 200, ok.start_line()
    return answer_port(ok)


async def hang_up(uac: Uac, call_id: str, to_tag: str | None) -> None:
    uac.send(uac.request("BYE", call_id, to_tag=to_tag))
    assert (await uac.response(call_id, "BYE")).status == 200


def to_tag_of(uac: Uac, call_id: str) -> str | None:
    return next(
        m.to_tag
        for m in uac.received
        if not isinstance(m, SipRequest) and m.call_id == call_id and m.status == 200
    )


async def test_loss_reordering_duplicates_and_dtmf(tiny_model_dir: Path, tmp_path: Path) -> None:
    """300 packets across the sequence and timestamp wraps, at 4x real time: 8 lost (a burst of
    5), neighbours swapped, packets resent, and 6 telephone-event packets in the middle. The
    stream keeps its length exactly; loss and DTMF become silence where they were."""
    coded, pcm, _ = g711_speech(6.0, "PCMU", offset=0)
    packets = rtp_packets(coded, 0)
    for i in range(150, 156):  # RFC 4733: one event; every packet has the event's start timestamp
        event = struct.pack("!BBH", 5, (0x80 if i == 155 else 0) | 10, (i - 149) * 160)
        packets[i] = build_rtp(
            101, 65500 + i, 4294960000 + 150 * 160, 0x5EED, event, marker=i == 150
        )
    lost = {40, 41, 42, 43, 44, 100, 220, 271}
    order, swaps, dups = shuffled(len(packets), lost)
    heard = pcm.copy()
    for i in [*lost, *range(150, 156)]:
        heard[i * 160 : (i + 1) * 160] = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        async with sip_daemon(tiny_model_dir, tmp_path) as (daemon, events, sip):
            uac = await Uac.open(sip.port)
            port = await start_call(uac, "rtp-loss", sock.getsockname()[1])
            await send_rtp([packets[i] for i in order], port, interval=0.005, sock=sock)
            await hang_up(uac, "rtp-loss", to_tag_of(uac, "rtp-loss"))
            await events.wait_for(lambda ev: bool(of(ev, "stream.ended")), 20)
            ref = await reference(daemon, {"heard": (heard, 8000)})
            status = sip.status()
            uac.close()
    (end,) = of(events.events, "stream.ended")
    assert end["summary"]["duration_s"] == pytest.approx(6.0, abs=1e-4)
    assert end["summary"]["frames_lost"] == len(lost)
    assert_same_windows(windows(events.events, end["stream"]["stream_id"]), ref["heard"])
    jitter = status["jitter"]
    assert jitter["duplicates"] == dups and jitter["reordered"] >= swaps and jitter["late"] == 0
    assert jitter["lost_packets"] == len(lost) and jitter["ignored"] == 6
    assert jitter["played"] == len(packets) - len(lost) - 6


@pytest.mark.slow
async def test_sender_restart_keeps_stream_time(tiny_model_dir: Path, tmp_path: Path) -> None:
    """In real time: 2 s, half a second of nothing, then a new SSRC with new sequence numbers
    and timestamps (an SBC failover). The gap comes from arrival times; stream time stays wall
    time."""
    coded, _, _ = g711_speech(4.0, "PCMU", offset=2)
    first = rtp_packets(coded[: 2 * 8000], 0, ssrc=1111)
    second = rtp_packets(coded[2 * 8000 :], 0, ssrc=2222, seq=17, ts=123456789)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        async with sip_daemon(tiny_model_dir, tmp_path) as (_, events, sip):
            uac = await Uac.open(sip.port)
            port = await start_call(uac, "rtp-restart", sock.getsockname()[1])
            await send_rtp(first, port, sock=sock)
            await asyncio.sleep(0.5)
            await send_rtp(second, port, sock=sock)
            await hang_up(uac, "rtp-restart", to_tag_of(uac, "rtp-restart"))
            await events.wait_for(lambda ev: bool(of(ev, "stream.ended")), 20)
            status = sip.status()
            uac.close()
    (end,) = of(events.events, "stream.ended")
    assert end["summary"]["duration_s"] == pytest.approx(
        4.52, abs=0.15
    )  # 0.5 s pause + one 20 ms tick
    assert status["jitter"]["ssrc_changes"] == 1 and end["summary"]["frames_lost"] == 0


async def test_junk_is_counted_and_the_call_is_still_scored(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """While a real call streams, random datagrams hit the SIP port and the RTP port, with
    oversize packets, multiplexed RTCP, a wrong payload type and a malformed request among them.
    Each kind is counted; the call's scores are exactly those of its clean audio."""
    coded, pcm, _ = g711_speech(6.0, "PCMU", offset=1)
    packets = rtp_packets(coded, 0)
    rng = random.Random(7)
    junk = [os.urandom(rng.randrange(1, 1400)) for _ in range(400)]
    rtcp = bytes([0x80, 200, 0, 6]) + os.urandom(24)
    wrong_pt = build_rtp(96, 1, 1, 0x5EED, b"\x00" * 160)
    bad_request = (
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbad\r\n"
        "From: <sip:j@127.0.0.1>;tag=j\r\n"
        "To: <sip:x@127.0.0.1>\r\nCall-ID: junk-1\r\nCSeq: 1 OPTIONS\r\n"
        "this line is not a header\r\nContent-Length: 0\r\n\r\n"
    )
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other,
    ):
        sock.bind(("127.0.0.1", 0))
        async with sip_daemon(tiny_model_dir, tmp_path) as (daemon, events, sip):
            uac = await Uac.open(sip.port)
            port = await start_call(uac, "rtp-junk", sock.getsockname()[1])

            async def attack() -> None:
                await asyncio.sleep(0.2)  # the call's source is latched by then
                uac.send(bad_request.format(port=uac.port))
                for i, j in enumerate(junk):
                    other.sendto(j, ("127.0.0.1", sip.port))
                    other.sendto(j, ("127.0.0.1", port))
                    if i % 40 == 0:
                        sock.sendto(b"\x80" + os.urandom(3000), ("127.0.0.1", port))
                        sock.sendto(rtcp, ("127.0.0.1", port))
                        sock.sendto(wrong_pt, ("127.0.0.1", port))
                        await asyncio.sleep(0.01)

            await asyncio.gather(send_rtp(packets, port, interval=0.005, sock=sock), attack())
            await hang_up(uac, "rtp-junk", to_tag_of(uac, "rtp-junk"))
            await events.wait_for(lambda ev: bool(of(ev, "stream.ended")), 20)
            ref = await reference(daemon, {"clean": (pcm, 8000)})
            status = sip.status()
            bad = await uac.response("junk-1", "OPTIONS", 400)
            uac.close()
    (end,) = of(events.events, "stream.ended")
    assert_same_windows(windows(events.events, end["stream"]["stream_id"]), ref["clean"])
    assert end["summary"]["frames_lost"] == 0 and end["summary"]["duration_s"] == pytest.approx(
        6.0, abs=1e-4
    )
    assert "malformed header line" in bad.reason
    rtp = status["rtp"]
    assert (
        rtp["foreign"] == len(junk)
        and rtp["oversize"] == 10
        and rtp["rtcp"] == 10
        and rtp["wrong_pt"] == 10
    )
    assert status["sip"]["junk"] >= len(junk) - 5 and status["sip"]["junk"] <= len(junk) + 1


@pytest.mark.slow
async def test_rtp_timeout_ends_the_stream_and_the_daemon_hangs_up(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A caller that stops sending: after ``rtp_timeout_s`` the stream ends with that reason,
    and the daemon sends a BYE in the dialog (its tag in From, the caller's in To)."""
    coded, _, _ = g711_speech(1.0, "PCMU", offset=4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        async with sip_daemon(tiny_model_dir, tmp_path, rtp_timeout_s=1.0) as (_, events, sip):
            uac = await Uac.open(sip.port)
            port = await start_call(uac, "rtp-timeout", sock.getsockname()[1])
            await send_rtp(rtp_packets(coded, 0), port, sock=sock)
            last = time.monotonic()  # 20 ms after the last packet went out
            bye: Any = await uac.wait(lambda m: isinstance(m, SipRequest) and m.method == "BYE", 5)
            waited = time.monotonic() - last
            uac.send(
                "SIP/2.0 200 OK\r\n"
                f"Via: {bye.headers.get('Via')}\r\nFrom: {bye.headers.get('From')}\r\n"
                f"To: {bye.headers.get('To')}\r\n"
                f"Call-ID: {bye.call_id}\r\nCSeq: {bye.headers.get('CSeq')}\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            await events.wait_for(lambda ev: bool(of(ev, "stream.ended")), 10)
            await asyncio.sleep(1.2)  # the 200 stopped the BYE's retransmissions
            status = sip.status()
            uac.close()
    (end,) = of(events.events, "stream.ended")
    assert end["summary"]["reason"] == "rtp timeout" and end["summary"][
        "duration_s"
    ] == pytest.approx(1.0, abs=1e-3)
    assert 0.95 <= waited <= 2.5, waited  # rtp_timeout_s after the last packet, checked every 0.5 s
    assert bye.call_id == "rtp-timeout" and bye.uri == f"sip:uac@127.0.0.1:{uac.port}"
    assert bye.from_tag == to_tag_of(uac, "rtp-timeout") and bye.to_tag == uac.tag
    assert sum(1 for m in uac.received if isinstance(m, SipRequest) and m.method == "BYE") == 1
    assert (
        status["sip"]["byes_sent"] == 1 and status["rtp"]["timeouts"] == 1 and status["calls"] == 0
    )
    assert np.isfinite(end["summary"]["speech_s"])


@pytest.mark.slow
async def test_reinvite_to_wideband_l16_switches_decoder_and_rate(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """3 s of PCMU, then a re-INVITE to L16/16000 and 3 s of it: the stream's resampler follows
    the new rate (``set_sample_rate``), so stream time goes on at the wall clock's pace."""
    coded, _, clean = g711_speech(6.0, "PCMU", offset=3)
    wide = np.clip(np.round(clean[3 * 16000 :] * 32768), -32768, 32767).astype(">i2").tobytes()
    l16 = [
        build_rtp(96, 9000 + i, 777 + i * 320, 0xB16, wide[i * 640 : (i + 1) * 640])
        for i in range(len(wide) // 640)
    ]
    body = (
        offer(0).split("m=audio")[0]
        + "m=audio {port} RTP/AVP 96\r\na=rtpmap:96 L16/16000\r\na=sendrecv\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        async with sip_daemon(tiny_model_dir, tmp_path) as (_, events, sip):
            uac = await Uac.open(sip.port)
            port = await start_call(uac, "rtp-l16", sock.getsockname()[1])
            tag = to_tag_of(uac, "rtp-l16")
            await send_rtp(rtp_packets(coded[: 3 * 8000], 0), port, interval=0.01, sock=sock)
            again = await uac.ask(
                "INVITE", "rtp-l16", to_tag=tag, body=body.format(port=sock.getsockname()[1])
            )
            assert again.status == 200 and b"L16/16000" in again.body and answer_port(again) == port
            uac.send(uac.request("ACK", "rtp-l16", to_tag=tag, cseq=uac.cseq))
            await send_rtp(l16, port, interval=0.01, sock=sock)
            await hang_up(uac, "rtp-l16", tag)
            await events.wait_for(lambda ev: bool(of(ev, "stream.ended")), 20)
            status = sip.status()
            uac.close()
    (end,) = of(events.events, "stream.ended")
    live = windows(events.events, end["stream"]["stream_id"])
    assert len(live) >= 3 and live[-1][1] == pytest.approx(6.0, abs=0.05), (
        live
    )  # 9 s if the rate were not switched
    assert status["rtp"]["decode_errors"] == 0 and status["rtp"]["wrong_pt"] == 0
    assert status["jitter"]["played"] == 300 and end["summary"]["frames_lost"] == 0
    assert end["summary"]["duration_s"] == pytest.approx(
        6.0, abs=1e-3
    )  # 3 s at 8 kHz, 3 s at 16 kHz


@pytest.mark.slow
async def test_unacked_200_ends_the_call_with_a_bye(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that never ACKs our 200: it is resent (T1 doubling) until 64*T1, then the call
    ends with a BYE. 64*T1 is cut to 2 s here, through the adapter's real timer."""
    from streamd.protocols.sip import transaction

    monkeypatch.setattr(transaction, "TIMEOUT", 2.0)
    async with sip_daemon(tiny_model_dir, tmp_path) as (_, events, sip):
        uac = await Uac.open(sip.port)
        uac.send(uac.request("INVITE", "no-ack", body=offer(4000)))  # and no ACK, ever
        ok = await uac.response("no-ack", "INVITE", 200)
        bye: Any = await uac.wait(lambda m: isinstance(m, SipRequest) and m.method == "BYE", 5)
        await events.wait_for(lambda ev: bool(of(ev, "stream.ended")), 10)
        status = sip.status()
        uac.close()
    (end,) = of(events.events, "stream.ended")
    copies = [r for r in uac.raw if r.startswith(b"SIP/2.0 200") and b"no-ack" in r]
    assert len(copies) == 3 and len(set(copies)) == 1  # at 0, 0.5 and 1.5 s
    assert end["summary"]["reason"] == "no ACK" and bye.from_tag == ok.to_tag
    assert status["calls"] == 0 and status["sip"]["byes_sent"] == 1
