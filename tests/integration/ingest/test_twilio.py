"""Twilio Media Streams into a running daemon over a real websocket, events read on
``/v1/events``."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamd.protocols.feeds.twilio import compute_signature

from tests.helpers.feeds import (
    TWILIO_ACCOUNT,
    TWILIO_CALL,
    TWILIO_STREAM,
    TwilioMessages,
    abort,
    assert_codec_explains,
    assert_same_windows,
    ended,
    feed_daemon,
    interleave,
    of,
    reference,
    send_paced,
    shuffle_and_duplicate,
    source,
    speech,
    started_by_leg,
    ulaw_8k,
    windows,
    ws_connect,
)

PATH = "/v1/ingest/twilio"


async def test_both_tracks_reordered_and_duplicated_score_like_streamd_score(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    caller, agent = speech(9.0, offset=0), speech(8.0, offset=5)
    (caller_ulaw, caller_8k), (agent_ulaw, agent_8k) = ulaw_8k(caller), ulaw_8k(agent)
    tw = TwilioMessages()
    media = interleave(
        tw.track_media("inbound", caller_ulaw), tw.track_media("outbound", agent_ulaw)
    )
    sent = [
        tw.connected(),
        tw.start(["inbound", "outbound"], queue="support", agent="a-17"),
        *shuffle_and_duplicate(media[:300]),
        tw.dtmf("5"),
        tw.mark("greeting"),
        *shuffle_and_duplicate(media[300:]),
        tw.stop(),
    ]
    async with feed_daemon(tiny_model_dir, tmp_path, twilio={}) as (daemon, events):
        async with ws_connect(daemon.server.url.replace("http", "ws") + PATH) as ws:  # type: ignore[union-attr]
            await send_paced(ws, sent)
            await asyncio.wait_for(ws.wait_closed(), 15)  # the daemon closes after ``stop``
        await events.wait_for(ended(2, "twilio"), 60)
        ref = await reference(
            daemon,
            {"caller": (caller_8k, 8000), "agent": (agent_8k, 8000)},
            {"caller": caller, "agent": agent},
        )
        status = source(daemon, "twilio").status()

    legs = started_by_leg(events.events, "twilio")
    assert set(legs) == {"caller", "agent"}
    for leg, track in (("caller", "inbound"), ("agent", "outbound")):
        stream = legs[leg]["stream"]
        assert stream["call_id"] == TWILIO_CALL and legs[leg]["sample_rate"] == 8000
        assert stream["labels"] == {
            "callSid": TWILIO_CALL,
            "streamSid": TWILIO_STREAM,
            "accountSid": TWILIO_ACCOUNT,
            "track": track,
            "queue": "support",
            "agent": "a-17",
        }
        live = windows(events.events, stream["stream_id"])
        assert_same_windows(live, ref[leg])
        assert_codec_explains(live, ref[f"{leg}-clean"], ref[f"{leg}-g711"])
        (end,) = of(events.events, "stream.ended", stream["stream_id"])
        assert end["summary"]["reason"] == "stop" and end["summary"]["frames_lost"] == 0
        assert end["summary"]["windows"] == len(live)
    assert status["notices"] == {"connected": 1, "dtmf": 1, "mark": 1}
    assert status["violations"] == 0 and status["abrupt"] == 0 and status["streams"] == 2
    # every window but the ones flushed at ``stop`` was queued while a media frame was written
    assert (
        len(ref["caller"]) + len(ref["agent"]) - 2
        <= status["frame_to_queue"]["n"]
        < len(ref["caller"]) + len(ref["agent"])
    )


async def test_lost_frames_become_silence_and_an_abrupt_drop_still_ends_the_stream(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    ulaw, _ = ulaw_8k(speech(7.0, offset=2))
    tw = TwilioMessages()
    lost = frozenset({40, 41, 42, 200})
    frames = tw.track_media("inbound", ulaw, skip=lost)
    async with feed_daemon(tiny_model_dir, tmp_path, twilio={}) as (daemon, events):
        async with ws_connect(daemon.server.url.replace("http", "ws") + PATH) as ws:  # type: ignore[union-attr]
            await send_paced(ws, [tw.connected(), tw.start(["inbound"]), *frames])
            await asyncio.sleep(0.2)
            abort(ws)  # no ``stop``, no close frame
        await events.wait_for(ended(1, "twilio"), 30)
        status = source(daemon, "twilio").status()
    (end,) = of(events.events, "stream.ended")
    assert end["summary"]["reason"] == "disconnect"
    assert end["summary"]["frames_lost"] == len(lost)
    assert end["summary"]["duration_s"] == pytest.approx(len(ulaw) / 8000, abs=0.021)
    assert of(events.events, "window.scored")
    assert status["abrupt"] == 1 and status["gaps"] == 2 and status["connections"] == 0


async def test_protocol_errors_are_logged_and_other_calls_keep_flowing(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good_ulaw, _ = ulaw_8k(speech(8.0, offset=7))
    good, bad = (
        TwilioMessages("CA" + "a" * 32, "MZ" + "a" * 32),
        TwilioMessages("CA" + "b" * 32, "MZ" + "b" * 32),
    )
    good_frames = good.track_media("inbound", good_ulaw)
    caplog.set_level(logging.WARNING, logger="streamd.ingest")
    async with feed_daemon(tiny_model_dir, tmp_path, twilio={"max_message_bytes": 4096}) as (
        daemon,
        events,
    ):
        url = daemon.server.url.replace("http", "ws") + PATH  # type: ignore[union-attr]
        async with ws_connect(url) as ok, ws_connect(url) as broken:
            await ok.send(good.start(["inbound"]))
            await broken.send(bad.start(["inbound"]))
            sender = asyncio.create_task(send_paced(ok, good_frames, every=5))
            await broken.send("{not json")
            await broken.send('{"event": "transcription", "streamSid": "x"}')
            await broken.send(b"\x00\x01binary")
            await broken.send(bad.media("inbound", 1, good_ulaw[:160]))
            await asyncio.sleep(0.2)
            assert broken.state.name == "OPEN"  # dropped messages do not end a call
            await broken.send(bad.media("inbound", 2, good_ulaw[:4000]))  # base64 over 4096 bytes
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(broken.recv(), 10)
            assert broken.close_code == 1009
            await sender
            await ok.send(good.stop())
        await events.wait_for(ended(2, "twilio"), 60)
        status = source(daemon, "twilio").status()
    ends = {e["stream"]["call_id"]: e["summary"] for e in of(events.events, "stream.ended")}
    assert ends[good.call]["reason"] == "stop" and ends[good.call]["windows"] >= 3
    assert ends[bad.call]["reason"] == "error"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (
        "not valid JSON",
        "unknown Twilio event 'transcription'",
        "Twilio sends text",
        "exceeds the limit of 4096",
    ):
        assert text in logged
    assert status["violations"] == 4 and status["fatal"] == 1


async def test_signature_checked_before_the_upgrade(tiny_model_dir: Path, tmp_path: Path) -> None:
    token = "twilio-auth-token"
    public = "wss://streamd.example.com/v1/ingest/twilio"
    async with feed_daemon(
        tiny_model_dir, tmp_path, twilio={"auth_token": token, "public_url": public}
    ) as (daemon, _):
        url = daemon.server.url.replace("http", "ws") + PATH  # type: ignore[union-attr]
        for headers in (
            {},
            {"X-Twilio-Signature": compute_signature("wrong", public)},
            {"X-Twilio-Signature": compute_signature(token, url.replace("ws:", "wss:"))},
        ):
            with pytest.raises(InvalidStatus) as err:
                async with ws_connect(url, additional_headers=headers):
                    pass
            assert err.value.response.status_code == 401
        async with ws_connect(
            url, additional_headers={"X-Twilio-Signature": compute_signature(token, public)}
        ) as ws:
            await ws.send(TwilioMessages().connected())
        assert source(daemon, "twilio").status()["unauthorized"] == 3


async def test_without_auth_token_server_tokens_apply_and_limits_refuse_with_503(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    server = {"tokens": ["s3cret"]}
    async with feed_daemon(
        tiny_model_dir, tmp_path, server=server, twilio={"max_connections": 1}
    ) as (daemon, _):
        url = daemon.server.url.replace("http", "ws") + PATH  # type: ignore[union-attr]
        with pytest.raises(InvalidStatus) as err:
            async with ws_connect(url):
                pass
        assert err.value.response.status_code == 401
        bearer = {"Authorization": "Bearer s3cret"}
        async with ws_connect(url, additional_headers=bearer) as first:
            await first.send(TwilioMessages().connected())
            with pytest.raises(InvalidStatus) as err:
                async with ws_connect(url, additional_headers=bearer):
                    pass
            assert err.value.response.status_code == 503
        status = source(daemon, "twilio").status()
    assert status["refused"] == 1 and status["unauthorized"] == 1 and status["accepted"] == 1


async def test_daemon_stop_ends_open_calls_and_closes_the_socket(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    ulaw, _ = ulaw_8k(speech(6.0, offset=8))
    tw = TwilioMessages()
    async with feed_daemon(tiny_model_dir, tmp_path, twilio={}) as (daemon, events):
        async with ws_connect(daemon.server.url.replace("http", "ws") + PATH) as ws:  # type: ignore[union-attr]
            await send_paced(ws, [tw.start(["inbound"]), *tw.track_media("inbound", ulaw)])
            await events.wait_for(lambda ev: bool(of(ev, "window.scored")), 30)
            await daemon.stop()  # SIGTERM's path: sources stop first, then the server
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1001
        status = source(daemon, "twilio").status()
    (end,) = of(events.events, "stream.ended")
    assert end["summary"]["reason"] == "shutdown" and end["summary"]["duration_s"] == pytest.approx(
        6.0, abs=0.02
    )
    assert status["up"] is False and status["abrupt"] == 0 and status["connections"] == 0


async def test_a_leg_over_max_streams_closes_the_connection_with_1013(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    tw = TwilioMessages()
    async with feed_daemon(tiny_model_dir, tmp_path, twilio={}) as (daemon, events):
        daemon.config.sources.max_streams = 1  # the upgrade passes, the second leg does not
        async with ws_connect(daemon.server.url.replace("http", "ws") + PATH) as ws:  # type: ignore[union-attr]
            await ws.send(tw.start(["inbound", "outbound"]))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1013
        await events.wait_for(ended(1, "twilio"), 30)
        status = source(daemon, "twilio").status()
    (end,) = of(events.events, "stream.ended")
    assert end["stream"]["leg"] == "caller" and end["summary"]["reason"] == "refused"
    assert status["streams_refused"] == 1 and status["streams"] == 1 and status["abrupt"] == 0
