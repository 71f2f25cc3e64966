"""Genesys AudioHook into a running daemon over a real websocket, events read on ``/v1/events``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamd.codecs.g711 import ulaw_decode, ulaw_encode

from tests.helpers.feeds import (
    AH_CONVERSATION,
    AH_ORG,
    AudioHookClient,
    abort,
    assert_codec_explains,
    assert_same_windows,
    audiohook_headers,
    ended,
    feed_daemon,
    narrowband,
    of,
    reference,
    source,
    speech,
    started_by_leg,
    windows,
    ws_connect,
)

PATH = "/v1/ingest/audiohook"
FEED = {"api_keys": ["SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"], "organization_ids": [AH_ORG]}


def url(daemon: Any) -> str:
    return str(daemon.server.url).replace("http", "ws") + PATH


async def test_stereo_session_with_pause_and_resume_scores_each_channel(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    customer, agent = speech(10.0, offset=1), speech(10.0, offset=9)
    ext, internal = narrowband(customer), narrowband(agent)
    cut, paused = 3 * 8000, 2 * 8000  # 2 s not sent after 3 s: the client reports it discarded
    session_id = str(uuid.uuid4())
    async with feed_daemon(tiny_model_dir, tmp_path, audiohook=FEED) as (daemon, events):
        async with ws_connect(url(daemon), additional_headers=audiohook_headers(session_id)) as ws:
            client = AudioHookClient(ws, session_id)
            opened = await client.open()
            assert opened["type"] == "opened" and opened["clientseq"] == 1
            assert opened["parameters"]["media"] == [
                {
                    "type": "audio",
                    "format": "PCMU",
                    "channels": ["external", "internal"],
                    "rate": 8000,
                }
            ]
            await client.audio(ext[:cut], internal[:cut])
            await client.send("paused")
            await asyncio.sleep(0.1)
            await client.send("resumed", {"start": "PT3S", "discarded": "PT2S"})
            await client.audio(ext[cut + paused :], internal[cut + paused :])
            await client.send("ping", {"rtt": "PT0.025S"})
            assert (await client.receive())["type"] == "pong"
            await client.send("close", {"reason": "end"})
            closed = await client.receive()
            assert closed["type"] == "closed" and closed["clientseq"] == client.seq
        await events.wait_for(ended(2, "audiohook"), 60)
        # what the daemon should have scored: the PCMU audio, silence where it was discarded
        heard = {
            leg: ulaw_decode(ulaw_encode(pcm))
            for leg, pcm in (("caller", ext), ("agent", internal))
        }
        clean = {"caller": customer.copy(), "agent": agent.copy()}
        for pcm, audio in zip(heard.values(), clean.values(), strict=True):
            pcm[cut : cut + paused] = 0
            audio[2 * cut : 2 * (cut + paused)] = 0
        ref = await reference(daemon, {leg: (pcm, 8000) for leg, pcm in heard.items()}, clean)
        status = source(daemon, "audiohook").status()

    legs = started_by_leg(events.events, "audiohook")
    assert set(legs) == {"caller", "agent"}
    for leg, channel in (("caller", "external"), ("agent", "internal")):
        stream = legs[leg]["stream"]
        labels = stream["labels"]
        assert stream["call_id"] == AH_CONVERSATION and labels["channel"] == channel
        assert labels["conversationId"] == AH_CONVERSATION and labels["sessionId"] == session_id
        assert labels["ani"] == "+13175550123" and labels["dnis"] == "+13175550199"
        assert labels["organizationId"] == AH_ORG
        live = windows(events.events, stream["stream_id"])
        assert_same_windows(live, ref[leg])
        assert_codec_explains(live, ref[f"{leg}-clean"], ref[f"{leg}-g711"])
        (end,) = of(events.events, "stream.ended", stream["stream_id"])
        assert end["summary"]["reason"] == "end"
        assert end["summary"]["duration_s"] == pytest.approx(10.0, abs=0.01)
    assert status["notices"] == {"paused": 1, "resumed": 1, "ping": 1}
    assert (
        status["gaps"] == 2 and status["gap_s"] == pytest.approx(4.0) and status["violations"] == 0
    )


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"X-API-KEY": "not-the-key"}, "X-API-KEY is not one of the configured keys"),
        ({"X-API-KEY": ""}, "missing X-API-KEY"),
        ({"Audiohook-Organization-Id": str(uuid.uuid4())}, "not in the allow list"),
    ],
)
async def test_wrong_credentials_get_401_before_the_upgrade(
    tiny_model_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    why: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="streamd.ingest")
    async with feed_daemon(tiny_model_dir, tmp_path, audiohook=FEED) as (daemon, events):
        with pytest.raises(InvalidStatus) as err:
            async with ws_connect(
                url(daemon), additional_headers={**audiohook_headers(str(uuid.uuid4())), **headers}
            ):
                pass
        assert err.value.response.status_code == 401
        assert source(daemon, "audiohook").status()["unauthorized"] == 1
    assert why in caplog.text and "upgrade refused (401)" in caplog.text
    assert not of(events.events, "stream.started")


@pytest.mark.slow
async def test_protocol_errors_get_disconnect_and_other_sessions_keep_flowing(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    customer, agent = narrowband(speech(8.0, offset=3)), narrowband(speech(8.0, offset=4))
    caplog.set_level(logging.WARNING, logger="streamd.ingest")
    feed = {**FEED, "max_message_bytes": 2048}
    async with feed_daemon(tiny_model_dir, tmp_path, audiohook=feed) as (daemon, events):
        good_id, early_id, big_id = (str(uuid.uuid4()) for _ in range(3))
        async with (
            ws_connect(url(daemon), additional_headers=audiohook_headers(good_id)) as good_ws,
            ws_connect(url(daemon), additional_headers=audiohook_headers(early_id)) as early_ws,
            ws_connect(url(daemon), additional_headers=audiohook_headers(big_id)) as big_ws,
        ):
            good, early, big = (
                AudioHookClient(w, i)
                for w, i in ((good_ws, good_id), (early_ws, early_id), (big_ws, big_id))
            )
            await good.open(conversation=str(uuid.uuid4()))
            sender = asyncio.create_task(good.audio(customer, agent))

            await early_ws.send(b"\xff" * 320)  # audio before ``open``
            disconnect = await early.receive()
            assert (
                disconnect["type"] == "disconnect" and disconnect["parameters"]["reason"] == "error"
            )
            assert disconnect["parameters"]["info"].startswith("409:")
            await early.send("close", {"reason": "error"})  # the client still closes properly
            assert (await early.receive())["type"] == "closed"

            await big.open(conversation=str(uuid.uuid4()))
            await big_ws.send(b"\xff" * 3000)  # over max_message_bytes
            disconnect = await big.receive()
            assert disconnect["type"] == "disconnect" and disconnect["parameters"][
                "info"
            ].startswith("413:")
            with pytest.raises(
                ConnectionClosed
            ):  # no ``close`` from this client: cut off after the grace
                await asyncio.wait_for(big_ws.recv(), 10)

            await sender
            await good.send("close", {"reason": "end"})
            assert (await good.receive())["type"] == "closed"
        await events.wait_for(ended(4, "audiohook"), 60)
    by_session: dict[str, list[dict[str, Any]]] = {}
    for e in of(events.events, "stream.ended"):
        by_session.setdefault(e["stream"]["labels"]["sessionId"], []).append(e["summary"])
    assert set(by_session) == {good_id, big_id}  # the early client never opened a stream
    assert all(s["reason"] == "end" and s["windows"] >= 3 for s in by_session[good_id])
    assert all(s["reason"] == "error" for s in by_session[big_id])
    assert (
        "binary frame in state preparing" in caplog.text
        and "exceeds the limit of 2048" in caplog.text
    )


async def test_abrupt_drop_and_an_hour_long_pause(tiny_model_dir: Path, tmp_path: Path) -> None:
    customer = narrowband(speech(6.0, offset=6))
    session_id = str(uuid.uuid4())
    feed = {**FEED, "max_gap_s": 5.0}
    async with feed_daemon(tiny_model_dir, tmp_path, audiohook=feed) as (daemon, events):
        async with ws_connect(url(daemon), additional_headers=audiohook_headers(session_id)) as ws:
            client = AudioHookClient(ws, session_id)
            await client.open()
            await client.audio(customer[:24000], customer[:24000])
            await client.send("paused")
            await client.send("resumed", {"start": "PT3S", "discarded": "PT3600S"})
            await client.audio(customer[24000:], customer[24000:])
            await asyncio.sleep(0.2)
            abort(ws)
        await events.wait_for(ended(2, "audiohook"), 60)
        status = source(daemon, "audiohook").status()
    ends = of(events.events, "stream.ended")
    assert {e["summary"]["reason"] for e in ends} == {"disconnect"}
    assert all(e["summary"]["duration_s"] == pytest.approx(6.0 + 5.0, abs=0.01) for e in ends)
    assert status["gaps_capped"] == 2 and status["abrupt"] == 1 and status["connections"] == 0
    assert np.isclose(status["gap_s"], 7200.0)


async def test_client_secret_requires_a_valid_fresh_signature(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    secret_b64 = base64.b64encode(b"a client secret of the integration").decode()
    feed = {**FEED, "client_secrets": {FEED["api_keys"][0]: secret_b64}}
    async with feed_daemon(tiny_model_dir, tmp_path, audiohook=feed) as (daemon, _):
        session_id = str(uuid.uuid4())
        plain = audiohook_headers(session_id)
        host = urlsplit(url(daemon)).netloc

        def signed(created: int, key: bytes) -> dict[str, str]:
            names = [
                "audiohook-organization-id",
                "audiohook-session-id",
                "audiohook-correlation-id",
                "x-api-key",
            ]
            lower = {k.lower(): v for k, v in plain.items()}
            params = (
                '("@request-target" "@authority" ' + " ".join(f'"{n}"' for n in names) + ")"
                f';keyid="{lower["x-api-key"]}";nonce="{uuid.uuid4().hex}";alg="hmac-sha256"'
                f";created={created}"
            )
            base = "\n".join(
                [f'"@request-target": {PATH}', f'"@authority": {host}']
                + [f'"{n}": {lower[n]}' for n in names]
                + [f'"@signature-params": {params}']
            )
            mac = base64.b64encode(hmac.new(key, base.encode(), hashlib.sha256).digest())
            return {
                **plain,
                "Signature-Input": f"sig1={params}",
                "Signature": f"sig1=:{mac.decode()}:",
            }

        good = base64.b64decode(secret_b64)
        for headers in (
            plain,
            signed(int(time.time()) - 120, good),
            signed(int(time.time()), b"x"),
        ):
            with pytest.raises(InvalidStatus) as refused:
                async with ws_connect(url(daemon), additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 401
        async with ws_connect(url(daemon), additional_headers=signed(int(time.time()), good)) as ws:
            client = AudioHookClient(ws, session_id)
            await client.open()
        status = source(daemon, "audiohook").status()
    assert status["bad_signatures"] == 3 and status["signed_keys"] == 1
