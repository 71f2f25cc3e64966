"""Non-speech call signals synthesized at 8 kHz, each through G.711 mu-law and back to 16 kHz.

Hold music (a chord melody), ringback (US, EU), busy, SIT, DTMF, fax CED/CNG, dial tone,
comfort noise and line hiss: what a call carries that is not a voice and must never alert.
"""

from __future__ import annotations

import numpy as np

from streamd.offline.channel import g711_roundtrip

SR = 8000


def _t(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * SR)) / SR


def _tone(freqs: list[float], seconds: float, amp: float = 0.25) -> np.ndarray:
    t = _t(seconds)
    wave = sum((np.sin(2 * np.pi * f * t) for f in freqs), np.zeros_like(t))
    return amp * wave / max(1, len(freqs))


def _cadence(
    freqs: list[float], on: float, off: float, total: float, amp: float = 0.25
) -> np.ndarray:
    out: list[np.ndarray] = []
    while sum(len(x) for x in out) < total * SR:
        out += [_tone(freqs, on, amp), np.zeros(int(off * SR))]
    return np.concatenate(out)[: int(total * SR)]


def hold_music(total: float, rng: np.random.Generator) -> np.ndarray:
    """A chord progression with a melody on top, with attack/decay envelopes."""
    roots = [261.63, 220.0, 174.61, 196.0, 293.66, 246.94]
    out: list[np.ndarray] = []
    while sum(len(x) for x in out) < total * SR:
        r = roots[rng.integers(len(roots))]
        dur = float(rng.choice([0.5, 1.0, 1.5]))
        t = _t(dur)
        env = np.minimum(1, t / 0.03) * np.exp(-t * 1.5)
        chord = sum(
            (
                np.sin(2 * np.pi * r * m * t) + 0.3 * np.sin(4 * np.pi * r * m * t)
                for m in (1, 1.26, 1.5)
            ),
            np.zeros_like(t),
        )
        mel = np.sin(2 * np.pi * r * 2 * float(rng.choice([1, 1.12, 1.26, 1.33, 1.5])) * t)
        out.append(0.12 * env * (chord + 0.8 * mel))
    return np.concatenate(out)[: int(total * SR)]


def dtmf(total: float, rng: np.random.Generator) -> np.ndarray:
    low, high = [697, 770, 852, 941], [1209, 1336, 1477]
    out: list[np.ndarray] = []
    while sum(len(x) for x in out) < total * SR:
        out += [
            _tone([low[rng.integers(4)], high[rng.integers(3)]], float(rng.uniform(0.08, 0.3))),
            np.zeros(int(rng.uniform(0.06, 0.5) * SR)),
        ]
    return np.concatenate(out)[: int(total * SR)]


def fax_ced(total: float) -> np.ndarray:
    """2100 Hz answer tone with phase reversals every 450 ms, then silence; repeated."""
    t = _t(3.3)
    phase = np.pi * (np.floor(t / 0.45) % 2)
    one = np.concatenate([0.3 * np.sin(2 * np.pi * 2100 * t + phase), np.zeros(int(0.5 * SR))])
    return np.tile(one, int(total / 3.8) + 1)[: int(total * SR)]


def pink(total: float, level_db: float, rng: np.random.Generator) -> np.ndarray:
    n = int(total * SR)
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[1:] /= np.sqrt(f[1:])
    x = np.fft.irfft(spec, n)
    return x / np.std(x) * 10 ** (level_db / 20)


def sit(total: float) -> np.ndarray:
    one = np.concatenate(
        [
            _tone([913.8], 0.274),
            _tone([1370.6], 0.274),
            _tone([1776.7], 0.380),
            np.zeros(int(1.0 * SR)),
        ]
    )
    return np.tile(one, int(total / 1.93) + 1)[: int(total * SR)]


def signals(total: float = 60.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Name -> 16 kHz float32 after an 8 kHz G.711 mu-law round trip."""
    import soxr

    rng = np.random.default_rng(seed)
    raw = {
        "hold_music": hold_music(total, rng),
        "ringback_us": _cadence([440, 480], 2.0, 4.0, total),
        "ringback_eu": _cadence([425], 1.0, 4.0, total),
        "busy": _cadence([480, 620], 0.5, 0.5, total),
        "sit": sit(total),
        "dtmf": dtmf(total, rng),
        "fax_ced": fax_ced(total),
        "fax_cng": _cadence([1100], 0.5, 3.0, total),
        "comfort_noise": pink(total, -50, rng),
        "line_hiss": rng.normal(0, 10 ** (-40 / 20), int(total * SR)),
        "dial_tone": _tone([350, 440], total),
    }
    out = {}
    for k, x in raw.items():
        x16 = soxr.resample(np.clip(x, -1, 1).astype(np.float32), SR, 16000)
        out[k] = g711_roundtrip(x16.astype(np.float32), "ulaw")
    return out
