"""Stream an audio file into streamd as one call over the audio-fork websocket, in real time.

    .venv/bin/python docs/examples/send_audiofork.py speech.wav [--call-id first-call]

This speaks FreeSWITCH mod_audio_fork's protocol (subprotocol ``audio.drachtio.org``): a JSON
metadata text frame, then binary frames of 16-bit little-endian PCM. The daemon needs
``sources.audiofork.enabled: true`` (``STREAMD_SOURCES__AUDIOFORK__ENABLED=true``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

import aiohttp
import numpy as np

from streamd.pipeline.audio import load_audio  # any file, any rate -> 16 kHz mono float32

FRAME_BYTES = 640  # 20 ms of 16 kHz 16-bit mono


async def send(
    url: str, path: str, call_id: str, token: str | None = None, realtime: bool = True
) -> None:
    pcm = (np.clip(load_audio(path), -1.0, 1.0) * 32767).astype("<i2").tobytes()
    meta = {"callId": call_id, "sampleRate": 16000, "mixType": "mono"}
    params = {"token": token} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"{url}/v1/ingest/audiofork", params=params, protocols=["audio.drachtio.org"]
        ) as ws,
    ):
        await ws.send_str(json.dumps(meta))
        for i in range(0, len(pcm), FRAME_BYTES):
            await ws.send_bytes(pcm[i : i + FRAME_BYTES])
            if realtime:
                await asyncio.sleep(0.02)  # as a live call would arrive
    print(f"sent {len(pcm) / 32000:.1f} s of audio as call {call_id!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", help="WAV/FLAC/OGG, any rate, mono or stereo")
    p.add_argument("--call-id", default="first-call")
    p.add_argument("--url", default=os.environ.get("STREAMD_URL", "http://127.0.0.1:8080"))
    p.add_argument("--token", default=os.environ.get("STREAMD_TOKEN"), help="server.tokens entry")
    p.add_argument(
        "--fast",
        action="store_true",
        help="send as fast as possible; the daemon cuts a stream more than sources.max_lead_s "
        "(10 s) ahead of real time, so only for short files",
    )
    args = p.parse_args()
    asyncio.run(send(args.url.rstrip("/"), args.file, args.call_id, args.token, not args.fast))


if __name__ == "__main__":
    main()
