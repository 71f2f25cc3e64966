"""Call channels a training window may cross: room, RawBoost nuisance, level and band, a transport
codec, and the G.711 leg to the SIP trunk, composed at random by ``call_channel``.

Every transform here is a pure function of 16 kHz mono float32 audio and a
``numpy.random.Generator`` (no global RNG: a seed fixes every draw) that returns 16 kHz float32 of
the same length, lined up with the input (codec delays are removed, see ``transcode``). Real and
fake clips must get the same draw probabilities, so that the channel stops separating classes.

- ``g722``, ``opus``, ``amr_nb``, ``mp3``: FFmpeg codec round trips through PyAV (``transcode``);
- ``reverb``: a synthetic room (exponentially decaying noise, RT60 0.15-0.8 s, direct path kept);
- ``rawboost_lnl``, ``rawboost_isd``, ``rawboost_ssi``, ``rawboost``: Tak et al. (``rawboost``);
- ``call_channel``: one random call path under a ``ChannelMix`` of probabilities and weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy.signal import fftconvolve

from streamd.training.augment import AugmentConfig, band_limit, change_level, g711
from streamd.training.mono import SAMPLE_RATE, require_mono
from streamd.training.rawboost import (
    ALGOS,
    rawboost,
    rawboost_isd,
    rawboost_lnl,
    rawboost_ssi,
)
from streamd.training.transcode import (
    amr_nb,
    amr_nb_step,
    g722,
    g722_step,
    mp3,
    mp3_step,
    opus,
    opus_step,
    transport_codecs,
)

__all__ = [
    "CallPath",
    "ChannelMix",
    "amr_nb",
    "call_channel",
    "g711_step",
    "g722",
    "mp3",
    "opus",
    "rawboost",
    "rawboost_isd",
    "rawboost_lnl",
    "rawboost_ssi",
    "reverb",
    "transport_codecs",
]

RT60_S = (0.15, 0.8)
DRR_DB = (0.0, 12.0)  # direct-to-reverberant energy: speakerphone (~0 dB) to a near talker


def reverb(
    x: np.ndarray,
    rng: np.random.Generator,
    rt60_s: tuple[float, float] = RT60_S,
    drr_db: tuple[float, float] = DRR_DB,
) -> np.ndarray:
    """Convolve with a synthetic room impulse response; the RMS level is kept.

    The response is a unit direct path at t = 0 (so nothing moves in time) followed, after a
    2-8 ms gap (first reflections), by Gaussian noise whose amplitude falls 60 dB over the drawn
    RT60, scaled to the drawn direct-to-reverberant ratio. No measured responses are needed.
    """
    return reverb_step(x, rng, rt60_s, drr_db)[0]


def reverb_step(
    x: np.ndarray,
    rng: np.random.Generator,
    rt60_s: tuple[float, float] = RT60_S,
    drr_db: tuple[float, float] = DRR_DB,
) -> tuple[np.ndarray, str]:
    x64 = require_mono(x).astype(np.float64)
    rt60, drr = float(rng.uniform(*rt60_s)), float(rng.uniform(*drr_db))
    gap = int(rng.uniform(0.002, 0.008) * SAMPLE_RATE)
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    tail = rng.standard_normal(t.size) * 10.0 ** (-3.0 * t / rt60)  # -60 dB at t = rt60
    tail *= np.sqrt(10.0 ** (-drr / 10.0) / np.sum(tail**2))
    rir = np.concatenate([[1.0], np.zeros(gap), tail])
    y = fftconvolve(x64, rir)[: x64.size]
    rms_in, rms_out = np.sqrt(np.mean(x64**2)), np.sqrt(np.mean(y**2))
    if rms_out > 0.0:
        y *= rms_in / rms_out
    out = np.clip(y, -1.0, 1.0).astype(np.float32)
    return out, f"reverb RT60 {rt60:.2f} s DRR {drr:.1f} dB"


def g711_step(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """G.711 as a transport leg: mu-law or A-law with equal odds (augment's round trip)."""
    law = "ulaw" if rng.random() < 0.5 else "alaw"
    return g711(require_mono(x), law), f"G.711 {law}"


def _none_step(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    del rng
    return x, "no transport codec"


Step = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, str]]
CODECS: dict[str, Step] = {
    "none": _none_step,  # the call is G.711 end to end (only the final leg)
    "g711": g711_step,  # a G.711 leg before the trunk's: tandem, or A-law to mu-law
    "g722": g722_step,
    "opus": opus_step,
    "amr_nb": amr_nb_step,
    "mp3": mp3_step,
}
_AUG = AugmentConfig()


@dataclass(frozen=True)
class ChannelMix:
    """Probabilities and weights of ``call_channel``'s random call path.

    ``codecs`` are relative weights of the transport codec (names in ``CODECS``; weight 0 turns
    one off); ``to_g711`` is the chance of the final G.711 mu-law leg (a call that crossed Opus
    reaches a SIP trunk as G.711). ``rawboost_algos`` are the RawBoost combinations drawn from
    when RawBoost applies (5 = LnL then ISD: convolutive with impulsive noise, the pairing the
    paper reports best on ASVspoof 2021 LA).
    """

    p_rawboost: float = 0.3
    rawboost_algos: tuple[int, ...] = (5,)
    p_reverb: float = 0.3
    p_level: float = _AUG.p_level
    gain_db: tuple[float, float] = _AUG.gain_db
    p_band: float = _AUG.p_band
    codecs: tuple[tuple[str, float], ...] = (
        ("none", 1.0),
        ("g711", 0.5),
        ("g722", 1.0),
        ("opus", 2.0),
        ("amr_nb", 1.5),
        ("mp3", 0.5),
    )
    to_g711: float = 1.0

    def __post_init__(self) -> None:
        for name in ("p_rawboost", "p_reverb", "p_level", "p_band", "to_g711"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"ChannelMix.{name} must be a probability in [0, 1], not {p}")
        bad = [a for a in self.rawboost_algos if a not in ALGOS]
        if bad or not self.rawboost_algos:
            raise ValueError(f"ChannelMix.rawboost_algos must be from {sorted(ALGOS)}, not {bad}")
        unknown = [c for c, _ in self.codecs if c not in CODECS]
        if unknown:
            raise ValueError(f"unknown codec(s) {unknown}; known: {sorted(CODECS)}")
        weights = [w for _, w in self.codecs]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("ChannelMix.codecs weights must be >= 0 with a positive sum")
        if self.gain_db[0] > self.gain_db[1]:
            raise ValueError(f"ChannelMix.gain_db must be (low, high), not {self.gain_db}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> ChannelMix:
        """From a recipe's YAML mapping; ``codecs`` may be a mapping of name to weight, and a
        mapping that lists only some codecs gives the rest weight 0."""
        known = {f.name for f in fields(cls)}
        extra = sorted(set(m) - known)
        if extra:
            raise ValueError(f"unknown ChannelMix key(s) {extra}; known: {sorted(known)}")
        kw: dict[str, Any] = dict(m)
        if "codecs" in kw:
            c = kw["codecs"]
            items = c.items() if isinstance(c, Mapping) else c
            kw["codecs"] = tuple((str(k), float(w)) for k, w in items)
        for key in ("gain_db", "rawboost_algos"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


@dataclass(frozen=True)
class CallPath:
    """One ``call_channel`` draw: the audio and what was applied, in order."""

    audio: np.ndarray
    applied: tuple[str, ...]

    @property
    def description(self) -> str:
        return "; ".join(self.applied) or "clean"


def call_channel(
    x: np.ndarray, rng: np.random.Generator, mix: ChannelMix | None = None
) -> CallPath:
    """One random call path, in the order a call applies it: talker side (RawBoost's device and
    line nuisance, the room), level and band limit, one transport codec drawn by weight, then the
    final G.711 mu-law leg.

    Each stage draws from its own generator, seeded from ``rng`` up front, so a mix that changes
    one stage (say ``p_reverb``, for an ablation) leaves every other stage's draws as they were.
    """
    m = mix or ChannelMix()
    y = require_mono(x)
    r_boost, r_room, r_level, r_band, r_codec, r_trunk = (
        np.random.default_rng(int(s)) for s in rng.integers(0, 2**63, size=6)
    )
    applied: list[str] = []
    if r_boost.random() < m.p_rawboost:
        algo = int(r_boost.choice(m.rawboost_algos))
        y = rawboost(y, r_boost, algo)
        applied.append(f"RawBoost {algo} ({ALGOS[algo]})")
    if r_room.random() < m.p_reverb:
        y, note = reverb_step(y, r_room)
        applied.append(note)
    if r_level.random() < m.p_level:
        gain = float(r_level.uniform(*m.gain_db))
        y = change_level(y, gain)
        applied.append(f"level {gain:+.1f} dB")
    if r_band.random() < m.p_band:
        y = band_limit(y)
        applied.append("300-3400 Hz")
    names = [c for c, _ in m.codecs]
    weights = np.array([w for _, w in m.codecs], dtype=np.float64)
    codec = names[int(r_codec.choice(len(names), p=weights / weights.sum()))]
    y, note = CODECS[codec](y, r_codec)
    applied.append(note)
    if r_trunk.random() < m.to_g711:
        y = g711(y, "ulaw")
        applied.append("G.711 ulaw to the trunk")
    return CallPath(np.clip(y, -1.0, 1.0).astype(np.float32), tuple(applied))
