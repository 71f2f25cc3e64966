"""Speech-like test signals for export verification, made here so export needs no data files.

Random noise alone exercises few paths of a speech model; a glottal pulse train through formant
resonators, with pitch and loudness that move, looks enough like voiced speech to catch graphs
that only match on noise.
"""

from __future__ import annotations

import numpy as np


def speechlike(n_samples: int, seed: int = 0, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / rate
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + rng.uniform(0, 60)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    source = (np.sin(phase) > 0.95).astype(np.float64) - 0.05
    out = np.zeros(n_samples)
    for formant, bw in ((700, 130), (1220, 70), (2600, 160)):
        r = np.exp(-np.pi * bw / rate)
        a1, a2 = -2 * r * np.cos(2 * np.pi * formant / rate), r * r
        y = np.zeros(n_samples)
        for i in range(2, n_samples):
            y[i] = source[i] - a1 * y[i - 1] - a2 * y[i - 2]
        out += y / (np.abs(y).max() + 1e-9)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6)) ** 2
    out = out * envelope + 0.01 * rng.standard_normal(n_samples)
    out = 0.5 * out / (np.abs(out).max() + 1e-9)
    return np.asarray(out, dtype=np.float32)


def probe_batch(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    """One batch per length: a noise row and a speech-like row."""
    rng = np.random.default_rng(seed)
    batches = []
    for i, n in enumerate(lengths):
        noise = (0.1 * rng.standard_normal(n)).astype(np.float32)
        batches.append(np.stack([noise, speechlike(n, seed + i)]))
    return batches
