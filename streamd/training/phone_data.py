"""Calls for the built-in phone detector: ../shared/data clips (and synthesized TTS) as calls,
passed through a phone channel and cut into exactly the windows the daemon scores.

Why windows and not clips: the daemon scores 4 s VAD windows every 1 s of speech and decides
per call with its smoother, so training, thresholds and per-call false-alarm rates must be
computed on the same windows, after the same channel.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamd.offline.channel import g711_roundtrip
from streamd.pipeline.audio import load_audio
from streamd.pipeline.vad import SpeechGate
from streamd.pipeline.windows import Windower

DIGITS_SOURCE = "Jakobovski__free-spoken-digit-dataset"
DIGITS_PER_CALL = 12  # 0.1-1.3 s digits are joined per speaker into calls of a few seconds


@dataclass(frozen=True)
class Call:
    id: str
    paths: tuple[Path, ...]
    label: str  # real | fake
    system: str
    source: str  # top folder of ../shared/data, or "debian-tts"
    speaker: str = ""
    license: str = ""

    @property
    def is_fake(self) -> int:
        return int(self.label == "fake")


def shared_calls(data_dir: Path) -> list[Call]:
    """Every clip of ``data_dir/manifest.csv`` as a call; spoken digits are joined per speaker."""
    with open(data_dir / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    calls: list[Call] = []
    digits: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        src = r["path"].split("/")[0]
        if src == DIGITS_SOURCE:
            digits[r["speaker"]].append(r)
            continue
        calls.append(
            Call(
                r["path"],
                (data_dir / r["path"],),
                r["label"],
                r["system"],
                src,
                r["speaker"],
                r["license"],
            )
        )
    for spk, rs in sorted(digits.items()):
        rs.sort(key=lambda r: r["path"])
        for k in range(0, len(rs), DIGITS_PER_CALL):
            part = rs[k : k + DIGITS_PER_CALL]
            calls.append(
                Call(
                    f"digits:{spk}:{k}",
                    tuple(data_dir / r["path"] for r in part),
                    "real",
                    "human",
                    DIGITS_SOURCE,
                    spk,
                    part[0]["license"],
                )
            )
    return calls


def load_call(call: Call) -> np.ndarray:
    """16 kHz mono float32; joined clips get 150 ms of silence between them."""
    parts = []
    for p in call.paths:
        parts.append(load_audio(p))
        if len(call.paths) > 1:
            parts.append(np.zeros(2400, dtype=np.float32))
    return np.concatenate(parts).astype(np.float32)


def phone_channel(audio16: np.ndarray, law: str = "ulaw") -> np.ndarray:
    return g711_roundtrip(audio16, law)  # type: ignore[arg-type]


def augmented_channel(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another phone line: band limit, level, line noise, then A-law or mu-law."""
    import scipy.signal as ss

    sos = ss.butter(
        4, [rng.uniform(100, 400), rng.uniform(2800, 3600)], btype="band", fs=16000, output="sos"
    )
    y = ss.sosfilt(sos, x).astype(np.float32) * np.float32(10 ** (rng.uniform(-18, 6) / 20))
    y += rng.normal(0, 10 ** (rng.uniform(-70, -45) / 20), size=y.shape).astype(np.float32)
    return phone_channel(np.clip(y, -1, 1), "alaw" if rng.random() < 0.5 else "ulaw")


def daemon_windows(
    audio16: np.ndarray,
    vad: tuple[int, int, int] = (2, 20, 200),
    windows: tuple[float, float, float, float] = (4.0, 2.5, 1.0, 0.8),
) -> Iterator[tuple[float, np.ndarray]]:
    """(end_s, samples) of every window the daemon would score (default config)."""
    gate = SpeechGate(*vad)
    win = Windower(*windows)
    step = 3200
    for i in range(0, len(audio16), step):
        for fr in gate.push(audio16[i : i + step]):
            for w in win.push(fr):
                yield w.end_s, w.samples
    for fr in gate.flush():
        for w in win.push(fr):
            yield w.end_s, w.samples
    for w in win.flush():
        yield w.end_s, w.samples
