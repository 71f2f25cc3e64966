"""Adaptive scoring end to end: scores flow back from the scorer to the windower of a live
stream, and a calm stream is scored less often (through ``bench adaptive``'s call player)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from streamd.bench.adaptive import run_calls, summarize
from streamd.bench.capacity import build_config
from streamd.bench.speech import Call, to_phone
from streamd.model.manifest import resolve_manifest
from streamd.model.session import Detector

pytestmark = pytest.mark.slow  # plays two 20 s calls packet by packet through the pipeline


def talk(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    phase = 2 * np.pi * np.cumsum(130 + 40 * np.sin(2 * np.pi * 1.7 * t)) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    return (0.3 * (0.6 + 0.4 * np.sin(2 * np.pi * 3.1 * t)) * voiced).astype(np.float32)


@pytest.mark.parametrize("calm_below,fewer", [(0.999, True), (0.001, False)])
def test_calm_streams_get_the_long_hop(
    tiny_model_dir: Path, calm_below: float, fewer: bool
) -> None:
    det = Detector.load(resolve_manifest(tiny_model_dir, "tiny"), ["cpu"])
    calls = [Call("real", "synthetic", to_phone(talk(20.0)))]
    fixed = summarize(asyncio.run(run_calls(det, build_config({}, {}), calls)))["real"]
    adaptive_cfg = build_config(
        {},
        {
            "windows.adaptive.enabled": True,
            "windows.adaptive.calm_below": calm_below,
            "windows.adaptive.long_hop_s": 3.0,
        },
    )
    adaptive = summarize(asyncio.run(run_calls(det, adaptive_cfg, calls)))["real"]
    per_min_fixed = fixed["windows_per_call_minute"]
    per_min = adaptive["windows_per_call_minute"]
    assert per_min_fixed >= 15  # windows all along the call
    if fewer:  # every window calm: 3 at the base hop, then one every 3 s
        assert per_min < 0.75 * per_min_fixed
    else:  # nothing is calm: adaptive scoring changes nothing
        assert per_min == per_min_fixed
