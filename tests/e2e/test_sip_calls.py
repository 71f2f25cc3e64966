"""SIP calls into a running daemon from sipp (Debian sip-tester), events read on ``/v1/events``.

Every scenario is a real peer on loopback: sipp's bundled ``uac_pcap``, and our own scenarios in
``tests/sipp/`` that stream real speech as PCMU/PCMA, open a SIPREC session, ping, cancel,
re-INVITE and call from an address outside ``allow_from``.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamd.codecs.g711 import alaw_decode
from streamd.protocols.rtp import parse_rtp
from streamd.protocols.sip.message import SipRequest, SipStreamFramer, parse_message

from tests.helpers.feeds import assert_codec_explains, assert_same_windows, of, reference, windows
from tests.helpers.rtp_samples import SIPP_PCAP, pcap_udp_payloads
from tests.helpers.sip import (
    LAWS,
    Uac,
    answer_port,
    by_id,
    free_udp_port,
    g711_speech,
    header,
    need_sipp,
    offer,
    rtp_packets,
    run_sipp,
    send_rtp,
    sip_daemon,
)
from tests.helpers.sip_samples import BOUNDARY, siprec_body


def sip_events(events: list[dict[str, Any]], stream_id: str) -> list[str]:
    return [e["type"] for e in by_id(events) if e.get("stream", {}).get("stream_id") == stream_id]


def assert_lifecycle(events: list[dict[str, Any]], stream_id: str, min_windows: int = 2) -> None:
    """``stream.started``, then windows, then ``stream.ended``, in id order."""
    types = [
        t
        for t in sip_events(events, stream_id)
        if t in ("stream.started", "window.scored", "stream.ended")
    ]
    assert types[0] == "stream.started" and types[-1] == "stream.ended", types
    assert types[1:-1] == ["window.scored"] * (len(types) - 2) and len(types) - 2 >= min_windows, (
        types
    )


async def test_bundled_uac_pcap_scenario(tiny_model_dir: Path, tmp_path: Path) -> None:
    """sipp's own ``uac_pcap``: PCMA at 30 ms a packet replayed from g711a.pcap, then a DTMF
    digit on an SSRC of its own, then BYE. The daemon must score exactly the pcap's audio."""
    need_sipp()
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP).close()
    except PermissionError:
        pytest.skip("sipp's pcap play needs raw sockets (root or CAP_NET_RAW)")
    (tmp_path / "pcap").mkdir()
    for name in ("g711a.pcap", "dtmf_2833_1.pcap"):
        (tmp_path / "pcap" / name).symlink_to(SIPP_PCAP.parent / name)
    rtp = [parse_rtp(p) for p in pcap_udp_payloads(SIPP_PCAP)]
    pcma = alaw_decode(
        b"".join(p.payload for p in sorted(rtp, key=lambda p: p.sequence) if p.payload_type == 8)
    )
    async with sip_daemon(tiny_model_dir, tmp_path) as (daemon, events, sip):
        code, out = await run_sipp(
            tmp_path, sip.port, "-sn", "uac_pcap", "-s", "service", "-m", "1", timeout=30
        )
        assert code == 0, out
        await events.wait_for(lambda ev: bool(of(ev, "stream.ended")), 30)
        ref = await reference(daemon, {"pcap": (pcma, 8000)})
        status = sip.status()
    (started,) = of(events.events, "stream.started")
    stream = started["stream"]
    assert (
        stream["source"] == "sip" and stream["leg"] == "caller" and started["sample_rate"] == 8000
    )
    assert stream["labels"]["codec"] == "PCMA/8000" and stream["labels"]["from"].startswith(
        "sip:sipp@"
    )
    assert_lifecycle(events.events, stream["stream_id"])
    assert_same_windows(windows(events.events, stream["stream_id"]), ref["pcap"])
    (end,) = of(events.events, "stream.ended")
    assert end["summary"]["reason"] == "bye" and end["summary"]["frames_lost"] == 0
    assert end["summary"]["duration_s"] == pytest.approx(len(pcma) / 8000, abs=1e-3)
    assert (
        status["jitter"]["played"] == len(pcma) // 240 and status["rtp"]["ignored"] > 0
    )  # the DTMF
    assert status["calls"] == 0 and status["rtp_ports_in_use"] == 0


async def test_pcmu_and_pcma_calls_score_like_streamd_score(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Two sipp callers at once stream 6 s of real speech, one PCMU and one PCMA, in real time.
    Window scores match ``streamd score`` on the decoded G.711 audio exactly, and move from the
    clean audio's scores by no more than the G.711 channel explains."""
    need_sipp()
    audio = {codec: g711_speech(6.0, codec, offset=i) for i, codec in enumerate(LAWS)}
    async with sip_daemon(tiny_model_dir, tmp_path) as (daemon, events, sip):
        runs = []
        for codec, (coded, _, _) in audio.items():
            folder = tmp_path / codec
            folder.mkdir()
            (folder / "speech.g711").write_bytes(coded)
            runs.append(
                run_sipp(
                    folder,
                    sip.port,
                    "-d",
                    "6400",
                    "-mp",
                    str(free_udp_port(even=True)),
                    "-m",
                    "1",
                    scenario="uac_g711.xml",
                    subs={"PT": str(LAWS[codec][0]), "CODEC": codec},
                )
            )
        for code, out in await asyncio.gather(*runs):
            assert code == 0, out
        await events.wait_for(lambda ev: len(of(ev, "stream.ended")) == 2, 30)
        ref = await reference(
            daemon,
            {c: (pcm, 8000) for c, (_, pcm, _) in audio.items()},
            {c: clean for c, (_, _, clean) in audio.items()},
        )
        status = sip.status()
    for started in of(events.events, "stream.started"):
        stream = started["stream"]
        codec = stream["labels"]["codec"].split("/")[0]
        assert stream["labels"]["from"].startswith("sip:+15550001@") and stream["leg"] == "caller"
        assert_lifecycle(events.events, stream["stream_id"])
        live = windows(events.events, stream["stream_id"])
        assert_same_windows(live, ref[codec])
        assert_codec_explains(live, ref[f"{codec}-clean"], ref[f"{codec}-g711"])
    summaries = [e["summary"] for e in of(events.events, "stream.ended")]
    assert all(
        s["reason"] == "bye"
        and s["duration_s"] == pytest.approx(6.0, abs=1e-3)
        and s["frames_lost"] == 0
        for s in summaries
    ), summaries
    assert (
        status["rtp"]["wrong_pt"] == 0
        and status["rtp"]["decode_errors"] == 0
        and status["sip"]["calls"] == 2
    )


async def test_siprec_session_brings_two_streams_with_legs_and_aors(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """An SRC's recording INVITE (multipart SDP + rs-metadata): the caller's stream from sipp,
    the agent's from Python to the second m-line's port; legs and AORs come from the metadata."""
    need_sipp()
    caller, caller_pcm, _ = g711_speech(6.0, "PCMU", offset=1)
    agent, agent_pcm, _ = g711_speech(6.0, "PCMU", offset=0)
    (tmp_path / "speech.g711").write_bytes(caller)
    async with sip_daemon(tiny_model_dir, tmp_path) as (daemon, events, sip):
        run = asyncio.ensure_future(
            run_sipp(
                tmp_path,
                sip.port,
                "-d",
                "6600",
                "-m",
                "1",
                "-mp",
                str(free_udp_port(even=True)),
                scenario="siprec.xml",
            )
        )
        await events.wait_for(lambda ev: len(of(ev, "stream.started")) == 2, 15)
        (call,) = sip.calls.values()
        ports = {r.stream.info.leg: r.port for r in call.receivers.values()}
        await send_rtp(rtp_packets(agent, 0, ssrc=0xA6E17), ports["agent"])
        code, out = await run
        assert code == 0, out
        await events.wait_for(lambda ev: len(of(ev, "stream.ended")) == 2, 30)
        ref = await reference(daemon, {"caller": (caller_pcm, 8000), "agent": (agent_pcm, 8000)})
    started = {e["stream"]["leg"]: e["stream"] for e in of(events.events, "stream.started")}
    assert set(started) == {"caller", "agent"}
    caller_labels, agent_labels = started["caller"]["labels"], started["agent"]["labels"]
    assert (
        caller_labels["aor"] == "sip:+15551230001@carrier.example.net"
        and caller_labels["name"] == "Alice Caller"
    )
    assert (
        agent_labels["aor"] == "sip:agent42@callcenter.example.com"
        and agent_labels["name"] == "Agent 42"
    )
    assert caller_labels["label"] == "1" and agent_labels["label"] == "2"
    assert (
        caller_labels["participant_id"] == "srfBElmCRp2QB23b7Mpk0w=="
        and caller_labels["role_rule"] == "order"
    )
    assert agent_labels["sip_session_id"].startswith("ab30317f1a784dc48ff824d0d3715d86")
    assert agent_labels["siprec_session_id"] == "hVpd7YQgRW2nD22h7q60JQ=="
    assert started["caller"]["call_id"] == started["agent"]["call_id"]
    for leg, stream in started.items():
        assert_lifecycle(events.events, stream["stream_id"])
        assert_same_windows(windows(events.events, stream["stream_id"]), ref[leg])
    assert {e["summary"]["reason"] for e in of(events.events, "stream.ended")} == {"bye"}


async def test_concurrent_sipp_calls(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Four calls at once from one sipp (``-l 4 -m 4``), each scored on its own."""
    need_sipp()
    coded, pcm, _ = g711_speech(3.6, "PCMU", offset=7)
    (tmp_path / "speech.g711").write_bytes(coded)
    async with sip_daemon(tiny_model_dir, tmp_path) as (daemon, events, sip):
        code, out = await run_sipp(
            tmp_path,
            sip.port,
            "-d",
            "4000",
            "-l",
            "4",
            "-m",
            "4",
            "-r",
            "20",
            "-mp",
            str(free_udp_port(even=True)),
            scenario="uac_g711.xml",
            subs={"PT": "0", "CODEC": "PCMU"},
        )
        assert code == 0, out
        await events.wait_for(lambda ev: len(of(ev, "stream.ended")) == 4, 30)
        ref = await reference(daemon, {"speech": (pcm, 8000)})
        peak = sip.status()
    starts = of(events.events, "stream.started")
    assert len({e["stream"]["call_id"] for e in starts}) == 4
    first_end = min(e["id"] for e in of(events.events, "stream.ended"))
    assert all(e["id"] < first_end for e in starts)  # all four were up at once
    for (
        e
    ) in starts:  # 3.6 s of speech is one window: the same one, with the same score, on every call
        live = windows(events.events, e["stream"]["stream_id"])
        assert [w[:2] for w in live] == [w[:2] for w in ref["speech"]] and len(live) >= 1, (
            live,
            ref,
        )
        assert max(abs(a[2] - b[2]) for a, b in zip(live, ref["speech"], strict=True)) <= 2e-6
    assert peak["calls"] == 0 and peak["sip"]["calls"] == 4


async def test_options_ping(tiny_model_dir: Path, tmp_path: Path) -> None:
    need_sipp()
    async with sip_daemon(tiny_model_dir, tmp_path) as (_, _, sip):
        code, out = await run_sipp(
            tmp_path, sip.port, "-m", "3", "-r", "10", scenario="options.xml"
        )
        status = sip.status()
    assert code == 0, out
    assert status["sip"]["requests"] == {"OPTIONS": 3} and status["sip"]["responses"] == {200: 3}


async def test_cancel_before_answer(tiny_model_dir: Path, tmp_path: Path) -> None:
    """With ``answer_delay_ms`` the daemon rings first; a CANCEL then ends the attempt: 200 for
    the CANCEL, 487 for the INVITE, no stream, no RTP port left bound."""
    need_sipp()
    async with sip_daemon(tiny_model_dir, tmp_path, answer_delay_ms=1500) as (_, events, sip):
        code, out = await run_sipp(tmp_path, sip.port, "-m", "1", scenario="cancel.xml")
        await asyncio.sleep(1.8)  # past the answer delay: nothing may happen then either
        status = sip.status()
    assert code == 0, out
    assert not of(events.events, "stream.started")
    assert status["sip"]["responses"] == {100: 1, 180: 1, 200: 1, 487: 1}
    assert status["calls"] == 0 and status["rtp_ports_in_use"] == 0


async def test_reinvite_hold_resume_and_codec_change(tiny_model_dir: Path, tmp_path: Path) -> None:
    """PCMU, hold (a=inactive) for longer than ``rtp_timeout_s``, resume in PCMA: one stream,
    still open after the hold, its decoder and clock switched, both parts scored in order."""
    need_sipp()
    first, first_pcm, _ = g711_speech(3.0, "PCMU", offset=3)
    second, second_pcm, _ = g711_speech(3.0, "PCMA", offset=4)
    (tmp_path / "first.g711").write_bytes(first)
    (tmp_path / "second.g711").write_bytes(second)
    async with sip_daemon(tiny_model_dir, tmp_path, rtp_timeout_s=2.0) as (daemon, events, sip):
        code, out = await run_sipp(
            tmp_path,
            sip.port,
            "-m",
            "1",
            "-mp",
            str(free_udp_port(even=True)),
            scenario="reinvite.xml",
        )
        assert code == 0, out
        await events.wait_for(lambda ev: bool(of(ev, "stream.ended")), 30)
        both = np.concatenate([first_pcm, second_pcm])
        ref = await reference(daemon, {"both": (both, 8000)})
        status = sip.status()
    (started,) = of(events.events, "stream.started")
    (end,) = of(events.events, "stream.ended")
    assert end["summary"]["reason"] == "bye"  # the hold did not time the stream out
    assert end["summary"]["duration_s"] == pytest.approx(
        6.0, abs=1e-3
    )  # hold time is not stream time
    assert_lifecycle(events.events, started["stream"]["stream_id"])
    assert_same_windows(windows(events.events, started["stream"]["stream_id"]), ref["both"])
    assert status["sip"]["requests"]["INVITE"] == 3 and status["rtp"]["timeouts"] == 0
    assert status["rtp"]["wrong_pt"] == 0 and status["rtp"]["decode_errors"] == 0


async def test_call_from_outside_allow_from_gets_403(tiny_model_dir: Path, tmp_path: Path) -> None:
    """sipp on 127.0.0.2 while ``allow_from`` is 127.0.0.1/32."""
    need_sipp()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.2", 0))
        except OSError:
            pytest.skip("127.0.0.2 is not a local address here")
    async with sip_daemon(tiny_model_dir, tmp_path) as (_, events, sip):
        code, out = await run_sipp(
            tmp_path, sip.port, "-i", "127.0.0.2", "-m", "1", scenario="forbidden.xml"
        )
        status = sip.status()
    assert code == 0, out
    assert not of(events.events, "stream.started")
    assert status["sip"]["responses"] == {403: 1} and status["calls"] == 0


async def test_answers_a_uas_owes_its_peers(tiny_model_dir: Path, tmp_path: Path) -> None:
    """What each request gets, from a Python UAC: errors with reasons, the 200 resent until the
    ACK, a retransmitted INVITE answered again without a second call, 486 over ``max_calls``,
    re-INVITEs that refresh or fail without touching the call, CSeq order, BYE."""
    async with sip_daemon(tiny_model_dir, tmp_path, max_calls=1) as (_, events, sip):
        uac = await Uac.open(sip.port)
        g729 = await uac.ask("INVITE", "e-488", body=offer(4000, pts=(18,)))
        assert g729.status == 488 and "no audio m-line with a supported codec" in g729.reason
        text = await uac.ask("INVITE", "e-415", body="hello", content_type="text/plain")
        assert text.status == 415 and "application/sdp" in header(text, "Accept")
        rel = await uac.ask("INVITE", "e-420", body=offer(4000), extra="Require: 100rel\r\n")
        assert rel.status == 420 and header(rel, "Unsupported") == "100rel"
        bad = await uac.ask("INVITE", "e-400", body="v=0\r\nm=audio x\r\n")
        assert bad.status == 400 and "SDP" in bad.reason
        register = await uac.ask("REGISTER", "e-405")
        assert register.status == 405 and "INVITE" in header(register, "Allow")
        assert (await uac.ask("FOO", "e-501")).status == 501
        assert (await uac.ask("BYE", "e-481", to_tag="nope")).status == 481
        assert (await uac.ask("CANCEL", "e-481c")).status == 481

        invite = uac.request("INVITE", "good", body=offer(4000), branch="z9hG4bKgood")
        uac.send(invite)
        ok = await uac.response("good", "INVITE", 200)
        await asyncio.sleep(1.7)  # no ACK yet: the 200 is resent at 0.5 s and 1.5 s (T1 doubling)
        copies = [r for r in uac.raw if r.startswith(b"SIP/2.0 200") and b"good" in r]
        assert len(copies) >= 3 and len(set(copies)) == 1, len(copies)
        uac.send(invite)  # a retransmitted INVITE: the same answer, no second call
        await asyncio.sleep(0.2)
        uac.send(uac.request("ACK", "good", to_tag=ok.to_tag, cseq=parse_message(invite).cseq[0]))
        await asyncio.sleep(1.5)
        after = [r for r in uac.raw if r.startswith(b"SIP/2.0 200") and b"good" in r]
        assert len(after) == len(copies) + 1 and len(of(events.events, "stream.started")) == 1

        busy = await uac.ask("INVITE", "second", body=offer(4002))
        assert busy.status == 486 and "max_calls" in busy.reason
        refresh = await uac.ask("INVITE", "good", to_tag=ok.to_tag)  # no body: the session as it is
        assert refresh.status == 200 and refresh.body == ok.body
        uac.send(uac.request("ACK", "good", to_tag=ok.to_tag, cseq=uac.cseq))
        worse = await uac.ask("INVITE", "good", to_tag=ok.to_tag, body=offer(4000, pts=(18,)))
        assert worse.status == 488
        assert (await uac.ask("INFO", "good", to_tag=ok.to_tag)).status == 200
        assert (
            await uac.ask("BYE", "good", to_tag=ok.to_tag, cseq=1)
        ).status == 500  # CSeq went back
        assert (await uac.ask("BYE", "good", to_tag=ok.to_tag)).status == 200
        await events.wait_for(lambda ev: bool(of(ev, "stream.ended")), 10)
        status = sip.status()
        uac.close()
    (end,) = of(events.events, "stream.ended")
    assert end["summary"]["reason"] == "bye"
    assert (
        status["calls"] == 0
        and status["rtp_ports_in_use"] == 0
        and status["sip"]["retransmissions"] == 1
    )


async def test_call_over_tcp_and_bye_on_shutdown(tiny_model_dir: Path, tmp_path: Path) -> None:
    """SIP over TCP: CRLF keep-alives, a call on one connection, audio scored; stopping the
    daemon sends BYE on that connection and ends the stream. A connection that breaks framing
    is closed without touching the call."""
    coded, pcm, _ = g711_speech(6.0, "PCMU", offset=0)
    async with sip_daemon(tiny_model_dir, tmp_path) as (daemon, events, sip):
        reader, writer = await asyncio.open_connection("127.0.0.1", sip.port)
        port = writer.get_extra_info("sockname")[1]
        framer = SipStreamFramer()
        received: list[Any] = []

        async def read() -> None:
            while data := await reader.read(65536):
                received.extend(parse_message(m) for m in framer.feed(data))

        reading = asyncio.ensure_future(read())
        body = offer(4000)
        writer.write(
            b"\r\n\r\n"
            + (
                "INVITE sip:service@127.0.0.1 SIP/2.0\r\n"
                f"Via: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKtcp1\r\n"
                "From: <sip:tcp@127.0.0.1>;tag=t1\r\n"
                "To: <sip:service@127.0.0.1>\r\nCall-ID: tcp-1\r\n"
                f"CSeq: 1 INVITE\r\nContact: <sip:tcp@127.0.0.1:{port};transport=tcp>\r\n"
                f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
            ).encode()
        )
        for _ in range(50):
            if any(getattr(m, "status", 0) == 200 for m in received):
                break
            await asyncio.sleep(0.1)
        ok = next(m for m in received if getattr(m, "status", 0) == 200)
        assert "transport=tcp" in header(ok, "Contact")
        writer.write(
            (
                "ACK sip:service@127.0.0.1 SIP/2.0\r\n"
                f"Via: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKtcp2\r\n"
                "From: <sip:tcp@127.0.0.1>;tag=t1\r\n"
                f"To: <sip:service@127.0.0.1>;tag={ok.to_tag}\r\n"
                "Call-ID: tcp-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        _, bad_writer = await asyncio.open_connection("127.0.0.1", sip.port)
        bad_writer.write(
            b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/TCP x;branch=z9hG4bKx\r\n\r\n"
        )  # no Content-Length
        await send_rtp(rtp_packets(coded, 0), answer_port(ok), interval=0.005)
        await asyncio.sleep(0.3)
        status = sip.status()
        await daemon.stop()
        await asyncio.wait_for(reading, 5)
        bad_writer.close()
        ref = await reference(daemon, {"tcp": (pcm, 8000)})
    bye = next(m for m in received if isinstance(m, SipRequest) and m.method == "BYE")
    assert bye.call_id == "tcp-1" and "SIP/2.0/TCP" in header(bye, "Via") and bye.to_tag == "t1"
    (end,) = of(events.events, "stream.ended")
    assert end["summary"]["reason"] == "shutdown" and end["summary"]["duration_s"] == pytest.approx(
        6.0, abs=1e-4
    )
    assert_same_windows(windows(events.events, end["stream"]["stream_id"]), ref["tcp"])
    assert (
        status["sip"]["keepalives"] == 1
        and status["sip"]["tcp_errors"] == 1
        and status["calls"] == 1
    )


async def test_bad_metadata_gets_400_and_no_rtp_port_gets_503(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A SIPREC INVITE whose metadata declares an entity (refused before expat sees it), and a
    second call when the only RTP port is taken."""
    port = free_udp_port(even=True)
    async with sip_daemon(tiny_model_dir, tmp_path, rtp_ports=[port, port]) as (_, events, sip):
        uac = await Uac.open(sip.port)
        bomb = (
            '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]>'
            '<recording xmlns="urn:ietf:params:xml:ns:recording:1"/>'
        )
        body = siprec_body(metadata=bomb).decode()
        bad = await uac.ask(
            "INVITE", "meta", body=body, content_type=f"multipart/mixed;boundary={BOUNDARY}"
        )
        assert bad.status == 400 and bad.reason.startswith(
            "Bad Request (recording metadata: DOCTYPE"
        )
        first = await uac.call("first", offer(4000))
        assert first.status == 200 and answer_port(first) == port
        second = await uac.ask("INVITE", "second", body=offer(4002))
        assert second.status == 503 and "rtp_ports" in second.reason
        assert (await uac.ask("BYE", "first", to_tag=first.to_tag)).status == 200
        await events.wait_for(lambda ev: bool(of(ev, "stream.ended")), 10)
        status = sip.status()
        uac.close()
    assert len(of(events.events, "stream.started")) == 1 and status["rtp_ports_in_use"] == 0


async def test_bench_abuse_prints_each_attack(tiny_model_dir: Path) -> None:
    """``streamd bench abuse`` end to end on two short phases: a live sipp call is scored through
    each, and the 501-m-line INVITE is refused and counted without binding a port."""
    import argparse

    from streamd.bench import abuse

    need_sipp()
    parser = argparse.ArgumentParser()
    abuse.register(parser.add_subparsers())
    args = parser.parse_args(
        ["abuse", "--models-dir", str(tiny_model_dir), "--seconds", "6",
         "--phases", "baseline,mlines", "--json"]
    )  # fmt: skip
    results = await asyncio.wait_for(abuse.measure(args), 120)
    base, mlines = results["phases"]
    assert base["live_windows"] >= 1 and base["live_frames_lost"] == 0 and base["sipp_exit"] == 0
    assert mlines["counted"]["sip.too_many_media"] == 1 and mlines["rtp_ports_in_use"] == 0
    assert mlines["live_frames_lost"] == 0 and mlines["live_lag_p99_s"] is not None
    assert mlines["rss_mb_after"] > 0 and mlines["warnings_logged"] >= 1
