"""Speech for the load benchmarks: real recordings as phone audio, built into calls.

Clips come from files the user names or from ``../shared/data`` (its ``manifest.csv`` labels
each clip real or fake). Calls are clips of one source and label played back to back, passed
through 8 kHz G.711 mu-law, because that is what a phone call delivers to the daemon.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from streamd.codecs.g711 import ulaw_decode, ulaw_encode
from streamd.errors import UsageError

PHONE_RATE = 8000


def find_shared(explicit: str | None = None) -> Path | None:
    """The shared data folder: ``--shared``, ``$STREAMD_SHARED``, else ``../shared`` from the
    current folder or from the repository; None when none holds ``data/manifest.csv``."""
    here = Path(__file__).resolve().parents[2]
    candidates = [explicit, os.environ.get("STREAMD_SHARED"), "../shared", here.parent / "shared"]
    for c in candidates:
        if c and (Path(c) / "data" / "manifest.csv").exists():
            return Path(c)
    if explicit:
        raise UsageError(f"{explicit}: no data/manifest.csv there")
    return None


def to_phone(audio_16k: np.ndarray) -> np.ndarray:
    """16 kHz float speech -> what a G.711 mu-law call delivers: 8 kHz int16."""
    narrow = soxr.resample(np.asarray(audio_16k, dtype=np.float32), 16000, PHONE_RATE)
    return ulaw_decode(ulaw_encode(np.clip(narrow, -1.0, 1.0)))


@dataclass(frozen=True)
class Call:
    label: str  # real, fake, or "switch" (real, then fake from switch_s on)
    source: str
    audio: np.ndarray  # 8 kHz int16, G.711 mu-law decoded
    switch_s: float = 0.0

    @property
    def seconds(self) -> float:
        return len(self.audio) / PHONE_RATE


def _load(path: Path) -> np.ndarray:
    from streamd.pipeline.audio import load_audio

    return load_audio(path)


def shared_clips(
    shared: Path, label: str, per_source: int = 12, min_rate: int = 16000
) -> dict[str, list[Path]]:
    """Clips of one label from the manifest, by source folder; wideband sources only (an 8 kHz
    set differs from the other class in language, as ../shared/data/MANIFEST.md warns)."""
    by_source: dict[str, list[Path]] = defaultdict(list)
    with open(shared / "data" / "manifest.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["label"] == label and int(row.get("sample_rate") or 0) >= min_rate:
                by_source[row["path"].split("/")[0]].append(shared / "data" / row["path"])
    return {src: sorted(set(files))[:per_source] for src, files in sorted(by_source.items())}


def build_calls(
    sources: dict[str, list[Path]], label: str, n: int, call_s: float, gap_s: float = 0.4
) -> list[Call]:
    """Up to ``n`` calls of about ``call_s`` each, every call from one source's clips in turn."""
    calls: list[Call] = []
    for source, files in sorted(sources.items(), key=lambda kv: -len(kv[1])):
        if len(calls) >= n:
            break
        parts: list[np.ndarray] = []
        total = 0.0
        gap = np.zeros(int(gap_s * 16000), np.float32)
        for path in files * 8:
            if total >= call_s:
                break
            x = _load(path)
            parts += [x, gap]
            total += len(x) / 16000 + gap_s
        if total >= min(call_s, 8.0):
            audio = np.concatenate(parts)[: int(call_s * 16000)]
            calls.append(Call(label, source, to_phone(audio)))
    return calls


def switch_calls(real: list[Call], fake: list[Call], half_s: float) -> list[Call]:
    """Real speech, then a synthetic voice takes over (no re-INVITE): the case adaptive scoring
    is slowest on, since the stream was calm when the fake started."""
    n = int(half_s * PHONE_RATE)
    out = []
    for r, f in zip(real, fake, strict=False):
        if r.seconds >= half_s and f.seconds >= half_s:
            audio = np.concatenate([r.audio[:n], f.audio[:n]])
            out.append(Call("switch", f"{r.source}>{f.source}", audio, half_s))
    return out


def speech_pool(files: list[str] | None, shared: Path | None, calls: int = 6) -> list[Call]:
    """Real speech for capacity runs: the given files, else real wideband clips from shared."""
    if files:
        out = []
        for f in files:
            p = Path(f)
            if not p.is_file():
                raise UsageError(f"{f}: no such audio file")
            out.append(Call("real", p.name, to_phone(_load(p))))
        return out
    if shared is None:
        return []
    return build_calls(shared_clips(shared, "real", per_source=6), "real", calls, 30.0)


def stream_audio(
    pool: list[Call], seconds: float, speech: float, rng: np.random.Generator
) -> np.ndarray:
    """``seconds`` of one caller: talk spurts from the pool, with silences so that a share
    ``speech`` of the time is speech (1.0: talking throughout)."""
    n = int(seconds * PHONE_RATE)
    out = np.zeros(n, np.int16)
    at = int(rng.uniform(0, 1.0) * PHONE_RATE) if speech < 1 else 0
    while at < n:
        call = pool[int(rng.integers(len(pool)))]
        spurt = int(rng.uniform(4.0, 9.0) * PHONE_RATE) if speech < 1 else n
        start = int(rng.integers(max(1, len(call.audio) - spurt)))
        piece = np.resize(call.audio[start:], min(spurt, n - at))
        out[at : at + len(piece)] = piece
        at += len(piece)
        if speech < 1:
            at += int(len(piece) * (1 - speech) / speech)
    return out
