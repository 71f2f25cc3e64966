"""Asterisk AudioSocket into a running daemon over real TCP, events read on ``/v1/events``."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamd.protocols.feeds.audiosocket import Kind, build_frame

from tests.helpers.feeds import (
    assert_codec_explains,
    assert_same_windows,
    audiosocket_call,
    closed_by_peer,
    ended,
    feed_daemon,
    narrowband,
    of,
    reference,
    source,
    speech,
    tcp_send,
    to_pcm16,
    windows,
)


def dial(daemon: Any) -> Any:
    s = source(daemon, "audiosocket")
    return asyncio.open_connection(s.host, s.port)


@pytest.mark.parametrize(("kind", "rate"), [(Kind.SLIN, 8000), (Kind.SLIN16, 16000)])
async def test_call_with_hangup_scores_like_streamd_score(
    tiny_model_dir: Path, tmp_path: Path, kind: int, rate: int
) -> None:
    audio = speech(8.0, offset=19)
    pcm = narrowband(audio) if rate == 8000 else to_pcm16(audio)
    call = uuid.uuid4()
    frames = audiosocket_call(call, pcm, kind)
    frames.insert(100, build_frame(Kind.DTMF, b"#"))
    async with feed_daemon(tiny_model_dir, tmp_path, audiosocket={"port": 0}) as (daemon, events):
        reader, writer = await dial(daemon)
        await tcp_send(writer, [*frames, build_frame(Kind.HANGUP)])
        assert await closed_by_peer(reader)  # the daemon hangs up its side after the hangup frame
        writer.close()
        await events.wait_for(ended(1, "audiosocket"), 60)
        ref = await reference(daemon, {"caller": (pcm, rate)}, {"caller": audio})
        status = source(daemon, "audiosocket").status()
    (start,) = of(events.events, "stream.started")
    stream = start["stream"]
    assert stream["call_id"] == str(call) and stream["labels"] == {"uuid": str(call)}
    assert stream["leg"] == "caller" and start["sample_rate"] == rate
    live = windows(events.events, stream["stream_id"])
    assert_same_windows(live, ref["caller"])
    if rate == 8000:  # linear PCM at 8 kHz: only the band limit, less than G.711 explains
        assert_codec_explains(live, ref["caller-clean"], ref["caller-g711"])
    else:
        assert_same_windows(live, ref["caller-clean"], tol=1e-4)
    (end,) = of(events.events, "stream.ended")
    assert end["summary"]["reason"] == "hangup" and end["summary"]["duration_s"] == pytest.approx(
        8.0
    )
    assert (
        status["notices"] == {"dtmf": 1}
        and status["violations"] == 0
        and status["connections"] == 0
    )


async def test_drops_errors_and_limits_leave_other_calls_flowing(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="streamd.ingest")
    pcm = narrowband(speech(10.0, offset=21))
    names = ("good", "early", "kind", "big", "error", "dropped", "idle")
    feed = {
        "port": 0,
        "max_message_bytes": 2048,
        "max_connections": len(names),
        "idle_timeout_s": 1.0,
    }
    async with feed_daemon(tiny_model_dir, tmp_path, audiosocket=feed) as (daemon, events):
        peers = {name: await dial(daemon) for name in names}
        feed_source = source(daemon, "audiosocket")
        for _ in range(200):
            if feed_source.status()["connections"] == len(names):
                break
            await asyncio.sleep(0.01)
        over = await dial(daemon)  # one more than max_connections
        assert await closed_by_peer(over[0])

        sender = asyncio.create_task(
            tcp_send(peers["good"][1], audiosocket_call(uuid.uuid4(), pcm), every=5)
        )
        for name in names[2:]:  # a second of a call first, so each of these has a stream
            await tcp_send(peers[name][1], audiosocket_call(uuid.uuid4(), pcm[:8000]))
        await asyncio.sleep(0.1)
        peers["early"][1].write(build_frame(Kind.SLIN, b"\x00" * 320))  # audio before the UUID
        peers["kind"][1].write(build_frame(0x42, b"?"))
        peers["big"][1].write(bytes([Kind.SLIN, 0x10, 0x00]))  # announces 4096 bytes
        peers["error"][1].write(build_frame(Kind.ERROR, b"\x02"))
        for name in ("early", "kind", "big", "error"):
            assert await closed_by_peer(peers[name][0]), name
        peers["dropped"][1].transport.abort()
        assert await closed_by_peer(peers["idle"][0])  # idle_timeout_s
        await sender
        peers["good"][1].write(build_frame(Kind.HANGUP))
        await events.wait_for(ended(6, "audiosocket"), 60)
        status = feed_source.status()
        for _, w in (over, *peers.values()):
            w.close()
    reasons = sorted(e["summary"]["reason"] for e in of(events.events, "stream.ended"))
    assert reasons == sorted(
        [
            "hangup",
            "error",
            "error",
            "error 0x02 (frame forwarding error)",
            "disconnect",
            "disconnect",
        ]
    )
    (hangup,) = [e for e in of(events.events, "stream.ended") if e["summary"]["reason"] == "hangup"]
    assert hangup["summary"]["windows"] >= 3
    for text in (
        "audio before the UUID frame",
        "unknown frame kind 0x42",
        "announces 4096 bytes, over 2048",
        f"max_connections ({len(names)}) reached",
        "no complete frame for 1.0 s",
    ):
        assert text in caplog.text, text
    assert status["refused"] == 1 and status["fatal"] == 3 and status["abrupt"] == 1
    assert status["accepted"] == len(names) and status["connections"] == 0


async def test_daemon_stop_ends_open_calls(tiny_model_dir: Path, tmp_path: Path) -> None:
    pcm = narrowband(speech(6.0, offset=23))
    async with feed_daemon(tiny_model_dir, tmp_path, audiosocket={"port": 0}) as (daemon, events):
        reader, writer = await dial(daemon)
        await tcp_send(writer, audiosocket_call(uuid.uuid4(), pcm))
        await events.wait_for(lambda ev: bool(of(ev, "window.scored")), 30)
        await daemon.stop()
        assert await closed_by_peer(reader)
        writer.close()
        status = source(daemon, "audiosocket").status()
    (end,) = of(events.events, "stream.ended")
    assert end["summary"]["reason"] == "shutdown" and end["summary"]["duration_s"] == pytest.approx(
        6.0
    )
    assert status["up"] is False and status["connections"] == 0


async def test_garbage_from_many_peers_leaves_no_stream_open(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Seeded random bytes after a valid start, on 24 connections at once: every stream that
    started ends, no connection is left, and the daemon still takes a clean call afterwards."""
    rng = np.random.default_rng(7)
    pcm = narrowband(speech(1.0, offset=25))

    async def peer(i: int) -> None:
        reader, writer = await dial(daemon)
        frames = audiosocket_call(uuid.uuid4(), pcm)[: int(rng.integers(2, 30))]
        junk = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
        await tcp_send(writer, frames)
        await asyncio.sleep(0.05)  # its own read: the framer drops whole frames read with a bad one
        await tcp_send(writer, [junk])
        await asyncio.sleep(float(rng.uniform(0, 0.2)))
        if i % 3 == 0:
            writer.transport.abort()
        else:
            writer.close()
        await closed_by_peer(reader, timeout=5)

    feed = {
        "port": 0,
        "max_message_bytes": 1024,
        "idle_timeout_s": 2.0,
        "max_connections_per_source": 30,
    }
    async with feed_daemon(tiny_model_dir, tmp_path, audiosocket=feed) as (daemon, events):
        await asyncio.gather(*(peer(i) for i in range(24)))
        feed_source = source(daemon, "audiosocket")
        for _ in range(300):
            if not feed_source.connections and not daemon.hub.streams:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.02)
        assert not feed_source.connections and not daemon.hub.streams  # type: ignore[union-attr]
        started = len(of(events.events, "stream.started"))
        await events.wait_for(ended(started, "audiosocket"), 30)
        _, writer = await dial(daemon)
        await tcp_send(writer, [*audiosocket_call(uuid.uuid4(), pcm), build_frame(Kind.HANGUP)])
        await events.wait_for(ended(started + 1, "audiosocket"), 30)
        writer.close()
    assert started == 24 and feed_source.counters.accepted == 25
    assert of(events.events, "stream.ended")[-1]["summary"]["reason"] == "hangup"


async def test_a_trickle_that_never_completes_a_frame_is_dropped(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """One byte every 0.2 s keeps the socket busy but never completes a frame: dropped after
    idle_timeout_s, while a frame-sending peer on the same listener is not."""
    feed = {"port": 0, "idle_timeout_s": 1.0}
    async with feed_daemon(tiny_model_dir, tmp_path, audiosocket=feed) as (daemon, _):
        reader, writer = await dial(daemon)
        frame = build_frame(Kind.UUID, uuid.uuid4().bytes)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        closed_at = None
        for i in range(40):  # bounded: at most 8 s
            try:
                writer.write(
                    frame[i % len(frame) : i % len(frame) + 1] if i < len(frame) else b"\x10"
                )
                await writer.drain()
            except ConnectionError:
                closed_at = loop.time() - t0
                break
            try:
                if not await asyncio.wait_for(reader.read(1), 0.2):
                    closed_at = loop.time() - t0
                    break
            except asyncio.TimeoutError:
                pass
        writer.close()
        status = source(daemon, "audiosocket").status()
    assert closed_at is not None and closed_at < 4.0, closed_at
    assert status["idle_dropped"] == 1
