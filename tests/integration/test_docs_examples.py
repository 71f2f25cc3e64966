"""The README's first call, as a reader runs it: the two scripts in docs/examples against a daemon.

``send_audiofork.py`` streams a file over the audio-fork websocket and ``print_events.py`` prints
what ``/v1/events`` says about it. The call must be scored exactly as ``streamd score`` scores
the same audio, and the printed lines must carry the call's events in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf

from tests.helpers.feeds import (
    assert_same_windows,
    ended,
    feed_daemon,
    of,
    reference,
    speech,
    windows,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_first_call_from_the_readme(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sender, printer = example("send_audiofork"), example("print_events")
    audio = speech(7.0, offset=5)
    wav = tmp_path / "speech.wav"
    sf.write(wav, audio, 16000, subtype="FLOAT")
    out = ""
    async with feed_daemon(tiny_model_dir, tmp_path, audiofork={}) as (daemon, events):
        assert daemon.server is not None
        url = str(daemon.server.url).rstrip("/")
        follower = asyncio.create_task(printer.follow(url, None, 0, "all"))
        try:
            await sender.send(url, str(wav), "readme-call", realtime=False)
            await events.wait_for(ended(1, "audiofork"), 60)
            for _ in range(200):  # the printer reads its own websocket: up to 10 s behind
                out += capsys.readouterr().out
                if "stream.ended" in out:
                    break
                await asyncio.sleep(0.05)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
        ref = await reference(daemon, {"caller": (pcm, 16000)})
    (start,) = of(events.events, "stream.started")
    assert start["stream"]["call_id"] == "readme-call" and start["stream"]["leg"] == "caller"
    live = windows(events.events, start["stream"]["stream_id"])
    assert_same_windows(live, ref["caller"])

    assert "sent 7.0 s of audio as call 'readme-call'" in out
    printed = re.findall(
        r"^#(\d+) \S+ (\S+)\s+audiofork caller call=readme-call ?(.*)$", out, re.MULTILINE
    )
    ids = [int(i) for i, _, _ in printed]
    assert ids == sorted(set(ids)), "each event once, in id order"
    alerts = of(events.events, "alert.raised") + of(events.events, "alert.cleared")
    types = [t for _, t, _ in printed if not t.startswith("alert.")]
    assert types == ["stream.started", *["window.scored"] * len(live), "stream.ended"], out
    assert len(printed) == len(types) + len(alerts)
    scores = [
        float(re.search(r"score=([0-9.]+)", rest).group(1))  # type: ignore[union-attr]
        for _, t, rest in printed
        if t == "window.scored"
    ]
    assert scores == pytest.approx([w[2] for w in live], abs=6e-4)
