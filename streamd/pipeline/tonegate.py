"""Tone and music rejector: windows that are call-progress tones, DTMF, fax or hold music are not
scored, so they can never raise an alert.

Why: webrtcvad passes steady tones and music as speech, and the detectors call them fake with
confidence (they were never trained on them). Speech is harmonic too, but its partials glide with
the pitch and the formants; tones and synthesized music hold a few partials at fixed frequencies.
The test: in most loud frames, nearly all the energy sits in a few spectral peaks that are still
peaks at the same frequency a few frames later. numpy only: the daemon never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_FFT = 1024  # 64 ms at 16 kHz: 15.6 Hz bins, fine enough to resolve a tone pair
HOP = 256
LAG = 4  # frames between the two looks at a peak (64 ms)
TOP = 8  # peaks per frame: a chord with harmonics, or a dual tone
BAND = (150.0, 3800.0)  # what survives a phone channel


@dataclass(frozen=True)
class ToneGate:
    """``is_tonal(window)``: True when the window should not be scored."""

    stable_share: float = 0.95  # share of loud-frame energy in peaks that hold their frequency
    frame_quorum: float = 0.5  # share of loud frames that must be tonal
    sample_rate: int = 16000

    def features(self, x: np.ndarray) -> tuple[float, float]:
        """(median stable-peak energy share, share of loud frames that are tonal)."""
        spec = _power_spectrogram(np.asarray(x, dtype=np.float32), self.sample_rate)
        if spec.shape[0] <= LAG:
            return 0.0, 0.0
        energy = spec.sum(axis=1)
        loud = energy > energy.max() * 10 ** (-30 / 10)
        peaks = _top_peaks(spec)
        stable = peaks[LAG:] & peaks[:-LAG]  # a peak now and LAG frames earlier, same bin
        # allow a one-bin drift (window edges, phase reversals) but no more
        stable |= peaks[LAG:] & np.roll(peaks[:-LAG], 1, axis=1)
        stable |= peaks[LAG:] & np.roll(peaks[:-LAG], -1, axis=1)
        wide = stable | np.roll(stable, 1, axis=1) | np.roll(stable, -1, axis=1)
        cur = spec[LAG:]
        share = (cur * wide).sum(axis=1) / np.maximum(cur.sum(axis=1), 1e-20)
        share = share[loud[LAG:]]
        if share.size == 0:
            return 0.0, 0.0
        return float(np.median(share)), float(np.mean(share >= self.stable_share))

    def is_tonal(self, x: np.ndarray) -> bool:
        _, quorum = self.features(x)
        return quorum >= self.frame_quorum


def _power_spectrogram(x: np.ndarray, rate: int) -> np.ndarray:
    if len(x) < N_FFT:
        return np.zeros((0, 1), dtype=np.float32)
    n = 1 + (len(x) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP][:n]
    spec = np.abs(np.fft.rfft(frames * np.hanning(N_FFT).astype(np.float32), axis=1)) ** 2
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / rate)
    keep = (freqs >= BAND[0]) & (freqs <= BAND[1])
    return spec[:, keep].astype(np.float64)


def _top_peaks(spec: np.ndarray) -> np.ndarray:
    """Boolean [frames, bins]: local maxima among the TOP largest of each frame."""
    left = np.pad(spec[:, :-1], ((0, 0), (1, 0)))
    right = np.pad(spec[:, 1:], ((0, 0), (0, 1)))
    is_max = (spec >= left) & (spec >= right)
    masked = np.where(is_max, spec, 0.0)
    k = min(TOP, spec.shape[1])
    kth = -np.partition(-masked, k - 1, axis=1)[:, k - 1 : k]
    return is_max & (masked >= kth) & (masked > 0)
