"""WebRTC peers per client address: one address cannot take every peer slot."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.daemonproc import speech_wav
from tests.helpers.webrtc import (
    WavSender,
    daemon_config,
    post_offer,
    running_daemon,
    webrtc_source,
)


async def test_peers_per_address_are_capped(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = daemon_config(
        tiny_model_dir,
        tmp_path / "e.db",
        sources={"webrtc": {"enabled": True, "max_peers": 10, "max_peers_per_address": 2}},
        model={"name": "tiny"},
    )
    wav = speech_wav(tmp_path / "s.wav", 3.0)
    senders = [WavSender(wav) for _ in range(3)]
    try:
        async with running_daemon(cfg) as daemon:
            assert daemon.server is not None
            statuses = []
            for s in senders:
                offer = await s.offer()
                status, body = await post_offer(daemon.server.url, {"type": "offer", "sdp": offer})
                statuses.append((status, body))
            assert [s for s, _ in statuses] == [200, 200, 429]
            assert "max_peers_per_address (2)" in str(statuses[2][1])
            webrtc = webrtc_source(daemon)
            assert webrtc.from_address("127.0.0.1") == 2 and not webrtc.pending_from
    finally:
        for s in senders:
            await s.close()
