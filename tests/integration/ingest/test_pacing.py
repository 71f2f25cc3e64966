"""A sender that outruns real time is cut; a live call beside it keeps being scored."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pytest

from streamd.pipeline.pacing import RealTimeBudget
from streamd.protocols.feeds.audiosocket import Kind, build_frame

from tests.helpers.feeds import audiosocket_call, closed_by_peer, narrowband, of, source, speech
from tests.helpers.webrtc import EventsClient, daemon_config, running_daemon


def test_budget_admits_real_time_and_a_lead_then_refuses() -> None:
    b = RealTimeBudget(max_lead_s=2.0, now=100.0)
    assert all(b.admit(0.02, 100.0 + 0.02 * i) for i in range(1000))  # 20 s paced: fine
    assert b.admit(1.9, 120.0)  # a jitter burst within the lead
    assert not b.admit(0.2, 120.0)  # now 2.1 s ahead of the clock
    assert b.lead(121.0) < 2.0  # time catching up would admit it again


@pytest.mark.slow
async def test_audiosocket_flood_is_cut_and_a_paced_call_is_still_scored(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    cfg = daemon_config(
        tiny_model_dir,
        tmp_path / "e.db",
        sources={
            "webrtc": {"enabled": False},
            "audiosocket": {"enabled": True, "port": 0},
            "max_lead_s": 2.0,
        },
        model={"name": "tiny", "batch_wait_ms": 20},
        windows={"hop_s": 1.0},
    )
    audio = narrowband(speech(12.0, offset=3))
    async with running_daemon(cfg) as daemon:
        assert daemon.server is not None and daemon.scorer is not None
        async with EventsClient(daemon.server.url, None) as events:
            s = source(daemon, "audiosocket")
            # 1. a paced call, 20 ms frames in real time
            paced_frames = audiosocket_call(uuid.uuid4(), audio)
            _, paced_w = await asyncio.open_connection(s.host, s.port)

            async def paced() -> None:
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                for i, f in enumerate(paced_frames):
                    paced_w.write(f)
                    await asyncio.sleep(max(0.0, t0 + i * 0.02 - loop.time()))
                paced_w.write(build_frame(Kind.HANGUP))
                await paced_w.drain()

            paced_task = asyncio.create_task(paced())
            await asyncio.sleep(1.0)
            # 2. a flood: 10 minutes of audio as fast as TCP takes it, bounded in time
            flood_r, flood_w = await asyncio.open_connection(s.host, s.port)
            flood_w.write(build_frame(Kind.UUID, uuid.uuid4().bytes))
            frame = build_frame(Kind.SLIN, np.tile(audio[:160], 1).astype("<i2").tobytes())
            sent_s, deadline = 0.0, asyncio.get_running_loop().time() + 20
            queued_max = 0
            try:
                while sent_s < 600 and asyncio.get_running_loop().time() < deadline:
                    flood_w.write(frame * 50)  # one second per write
                    sent_s += 1.0
                    await flood_w.drain()
                    queued_max = max(queued_max, daemon.scorer.pending)
            except ConnectionError:
                pass
            assert await closed_by_peer(flood_r)
            flood_w.close()
            await asyncio.wait_for(paced_task, 30)
            await events.wait_for(lambda ev: len(of(ev, "stream.ended")) >= 2, 60)
        ended = {e["stream"]["stream_id"]: e["summary"] for e in of(events.events, "stream.ended")}
        reasons = sorted(s["reason"] for s in ended.values())
        assert reasons == ["faster_than_real_time", "hangup"], reasons
        cut = next(s for s in ended.values() if s["reason"] == "faster_than_real_time")
        assert cut["duration_s"] <= 2.0 + 3.0  # taken: elapsed time plus the lead, no more
        assert queued_max <= 40, queued_max  # the flood never queued a backlog of windows
        paced_windows = [
            e
            for e in of(events.events, "window.scored")
            if ended.get(e["stream"]["stream_id"], {}).get("reason") == "hangup"
        ]
        assert len(paced_windows) >= 8  # the live call was scored all along
