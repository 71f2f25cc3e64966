"""FreeSWITCH mod_audio_fork into a running daemon over a real websocket, events on
``/v1/events``."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamd.protocols.feeds.audiofork import SUBPROTOCOL

from tests.helpers.feeds import (
    abort,
    assert_codec_explains,
    assert_same_windows,
    chunks,
    ended,
    feed_daemon,
    narrowband,
    of,
    reference,
    send_paced,
    source,
    speech,
    started_by_leg,
    to_pcm16,
    windows,
    ws_connect,
)

PATH = "/v1/ingest/audiofork"
TOKEN = "fork-token"
CALL = "3f6a9b2e-1c44-4d0e-9a57-2b8f61d0c9aa"


def url(daemon: Any, token: str | None = TOKEN) -> str:
    return (
        str(daemon.server.url).replace("http", "ws") + PATH + (f"?token={token}" if token else "")
    )


def fork(daemon: Any, token: str | None = TOKEN) -> Any:
    return ws_connect(url(daemon, token), subprotocols=[SUBPROTOCOL])


def l16_frames(pcm: np.ndarray, samples: int) -> list[bytes]:
    """Little-endian L16, ``samples`` per frame per channel (``pcm`` is ``[n]`` or ``[n, 2]``)."""
    return [c.astype("<i2").tobytes() for c in chunks(pcm, samples)]


async def test_mono_16k_scores_like_streamd_score(tiny_model_dir: Path, tmp_path: Path) -> None:
    audio = speech(8.0, offset=11)
    pcm = to_pcm16(audio)
    meta = {
        "callId": CALL,
        "sampleRate": 16000,
        "mixType": "mono",
        "from": "+15550100",
        "to": "1000",
    }
    async with feed_daemon(tiny_model_dir, tmp_path, server={"tokens": [TOKEN]}, audiofork={}) as (
        daemon,
        events,
    ):
        async with fork(daemon) as ws:
            assert ws.subprotocol == SUBPROTOCOL
            await send_paced(ws, [json.dumps(meta), *l16_frames(pcm, 320)])
        await events.wait_for(ended(1, "audiofork"), 60)
        ref = await reference(daemon, {"caller": (pcm, 16000)})
        clean = await reference(daemon, {"caller-clean": (audio, 16000)})
    (start,) = of(events.events, "stream.started")
    assert start["sample_rate"] == 16000 and start["stream"]["leg"] == "caller"
    assert start["stream"]["call_id"] == CALL
    assert start["stream"]["labels"] == {**{k: str(v) for k, v in meta.items()}, "mix": "mono"}
    live = windows(events.events, start["stream"]["stream_id"])
    assert_same_windows(live, ref["caller"])
    assert_same_windows(
        live, clean["caller-clean"], tol=1e-4
    )  # 16-bit PCM of 16 kHz audio: nearly clean
    (end,) = of(events.events, "stream.ended")
    assert end["summary"]["reason"] == "disconnect" and end["summary"][
        "duration_s"
    ] == pytest.approx(8.0)


async def test_stereo_8k_from_config_defaults_scores_each_party(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    caller, callee = speech(8.0, offset=13), speech(8.0, offset=15)
    pcm = np.stack([narrowband(caller), narrowband(callee)], axis=1)
    feed = {"mix": "stereo", "sample_rate": 8000}
    async with feed_daemon(tiny_model_dir, tmp_path, audiofork=feed) as (daemon, events):
        async with fork(daemon, token=None) as ws:
            await send_paced(
                ws, [json.dumps({"uuid": CALL, "direction": "inbound"}), *l16_frames(pcm, 160)]
            )
            await ws.send('{"event": "dtmf", "digit": "7"}')  # a later text frame: a notice
        await events.wait_for(ended(2, "audiofork"), 60)
        ref = await reference(daemon, {"caller": (pcm[:, 0], 8000), "agent": (pcm[:, 1], 8000)})
        sim = await reference(daemon, {}, {"caller": caller, "agent": callee})
        status = source(daemon, "audiofork").status()
    legs = started_by_leg(events.events, "audiofork")
    assert set(legs) == {"caller", "agent"}
    for leg in legs:
        stream = legs[leg]["stream"]
        assert (
            stream["call_id"] == CALL
            and stream["labels"]["mix"] == "stereo"
            and legs[leg]["sample_rate"] == 8000
        )
        live = windows(events.events, stream["stream_id"])
        assert_same_windows(live, ref[leg])
        # 8 kHz L16 loses the upper band but has no companding noise: less than G.711 explains
        assert_codec_explains(live, sim[f"{leg}-clean"], sim[f"{leg}-g711"])
    assert status["notices"] == {"text": 1} and status["abrupt"] == 0


async def test_errors_close_with_the_websocket_code_and_other_forks_keep_flowing(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pcm = narrowband(speech(8.0, offset=17))
    caplog.set_level(logging.WARNING, logger="streamd.ingest")
    feed = {"max_message_bytes": 4096}
    async with feed_daemon(
        tiny_model_dir, tmp_path, server={"tokens": [TOKEN]}, audiofork=feed
    ) as (daemon, events):
        with pytest.raises(InvalidStatus) as err:
            async with fork(daemon, token="wrong"):
                pass
        assert err.value.response.status_code == 401
        async with (
            fork(daemon) as good,
            fork(daemon) as odd,
            fork(daemon) as big,
            fork(daemon) as cut,
        ):
            await good.send(json.dumps({"callId": "good"}))
            sender = asyncio.create_task(send_paced(good, l16_frames(pcm, 160), every=5))
            await odd.send(json.dumps({"callId": "odd"}))
            await odd.send(b"\x00" * 321)  # half a sample: not L16
            await big.send(json.dumps({"callId": "big"}))
            await big.send(b"\x00" * 6000)  # over max_message_bytes
            await cut.send(json.dumps({"callId": "cut"}))
            await cut.send(b"\x00" * 320)
            for ws, code in ((odd, 1002), (big, 1009)):
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                assert ws.close_code == code
            abort(cut)
            await sender
        await events.wait_for(ended(4, "audiofork"), 60)
        status = source(daemon, "audiofork").status()
    ends = {e["stream"]["call_id"]: e["summary"] for e in of(events.events, "stream.ended")}
    assert ends["good"]["reason"] == "disconnect" and ends["good"]["windows"] >= 3
    assert (
        ends["odd"]["reason"] == ends["big"]["reason"] == "error"
        and ends["cut"]["reason"] == "disconnect"
    )
    assert (
        "not a whole number of 2-byte samples" in caplog.text
        and "exceeds the limit of 4096" in caplog.text
    )
    assert status["fatal"] == 2 and status["abrupt"] == 1 and status["unauthorized"] == 1
