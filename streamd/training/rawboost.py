"""RawBoost: the three raw-waveform nuisance models of Tak et al., re-implemented on a Generator.

H. Tak, M. Kamble, J. Patino, M. Todisco, N. Evans, "RawBoost: a raw data boosting and
augmentation method applied to automatic speaker verification anti-spoofing", ICASSP 2022
(arXiv:2111.04433). It models what encoding, transmission, microphones and amplifiers do to a
telephone voice without any external noise or impulse-response data:

1. ``rawboost_lnl``, linear and non-linear convolutive noise: a sum over j = 1..N_f of x**j, each
   through its own random multi-band filter (a cascade of ``n_bands`` FIR notch filters); the
   higher-order terms sit 5-20 dB below the linear one (a Hammerstein-style distortion).
2. ``rawboost_isd``, impulsive signal-dependent noise: up to P % of samples, chosen at random,
   get x[t] * g_sd * u1 * u2 added (u1, u2 uniform in [-1, 1]), like clipping and bit errors.
3. ``rawboost_ssi``, stationary signal-independent noise: white noise through a random multi-band
   filter, added at a random SNR.

The parameter ranges are the defaults of the authors' reference code (TakHemlata/
RawBoost-antispoofing, ``main.py``), at 16 kHz: N_f = 5, 5 bands, centre 20-8000 Hz, width
100-1000 Hz, 10-100 FIR taps (made odd), linear gain 0 dB, non-linear terms 5-20 dB lower;
P = 10 %, g_sd = 2; SNR 10-40 dB. ``rawboost(x, rng, algo)`` runs that code's combinations by
their number: 1, 2, 3 alone, 4 = 1+2+3 in series, 5 = 1+2 in series, 6 = 1+3, 7 = 2+3, 8 = 1 and
2 in parallel (outputs summed). The paper reports its best ASVspoof 2021 LA results from
combining convolutive (1) and impulsive (2) noise.

Differences from the reference code, none of which changes the distributions: randomness comes
from the Generator passed in (never the global one); the FIR cascade is applied with its exact
linear-phase delay removed, so the output lines up with the input sample for sample.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import fftconvolve, firwin, freqz

from streamd.training.mono import SAMPLE_RATE, peak_normalize, require_mono

N_F = 5
N_BANDS = 5
CENTRE_HZ = (20.0, 8000.0)
WIDTH_HZ = (100.0, 1000.0)
TAPS = (10, 100)
LINEAR_GAIN_DB = (0.0, 0.0)
NONLINEAR_BIAS_DB = (5.0, 20.0)
ISD_MAX_PERCENT = 10.0
ISD_GAIN = 2.0
SSI_SNR_DB = (10.0, 40.0)
ALGOS = {
    1: "lnl",
    2: "isd",
    3: "ssi",
    4: "lnl+isd+ssi",
    5: "lnl+isd",
    6: "lnl+ssi",
    7: "isd+ssi",
    8: "lnl||isd",
}


def multiband_filter(
    rng: np.random.Generator, gain_db: float, n_bands: int = N_BANDS, fs: int = SAMPLE_RATE
) -> np.ndarray:
    """A cascade of ``n_bands`` Hamming-windowed FIR band-stop filters at random centres, widths
    and orders; scaled so that its largest gain is ``gain_db``. Symmetric, odd length."""
    b = np.ones(1)
    for _ in range(n_bands):
        centre, width = rng.uniform(*CENTRE_HZ), rng.uniform(*WIDTH_HZ)
        taps = int(rng.uniform(*TAPS))
        taps += 1 - taps % 2  # firwin's band-stop needs an odd length
        low = max(centre - width / 2, 1e-3)
        high = min(centre + width / 2, fs / 2 - 1e-3)
        b = np.convolve(b, firwin(taps, [low, high], window="hamming", fs=fs))
    _, h = freqz(b, 1, worN=1024, fs=fs)
    peak = float(np.max(np.abs(h)))
    out: np.ndarray = 10.0 ** (gain_db / 20.0) * b / peak
    return out


def _filter(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Linear-phase FIR with its (len-1)/2 delay removed: the output lines up with the input."""
    half = (b.size - 1) // 2
    full = fftconvolve(x, b)
    out: np.ndarray = full[half : half + x.size]
    return out


def rawboost_lnl(x: np.ndarray, rng: np.random.Generator, n_f: int = N_F) -> np.ndarray:
    """Algorithm 1: sum of x**j through random multi-band filters, j = 1..n_f."""
    x64 = require_mono(x).astype(np.float64)
    y = np.zeros_like(x64)
    for j in range(1, n_f + 1):
        gain = rng.uniform(*LINEAR_GAIN_DB)
        if j > 1:
            gain -= rng.uniform(*NONLINEAR_BIAS_DB)
        y += _filter(x64**j, multiband_filter(rng, gain))
    return peak_normalize(y - y.mean())


def rawboost_isd(
    x: np.ndarray,
    rng: np.random.Generator,
    max_percent: float = ISD_MAX_PERCENT,
    gain: float = ISD_GAIN,
) -> np.ndarray:
    """Algorithm 2: a random share (0 to ``max_percent`` %) of samples get signal-dependent
    impulses; every other sample is left exactly as it was (unless the peak must come down)."""
    x64 = require_mono(x).astype(np.float64)
    share = rng.uniform(0.0, max_percent) / 100.0
    hit = rng.permutation(x64.size)[: int(x64.size * share)]
    u = (2.0 * rng.random(hit.size) - 1.0) * (2.0 * rng.random(hit.size) - 1.0)
    y = x64.copy()
    y[hit] += gain * x64[hit] * u
    return peak_normalize(y)


def rawboost_ssi(
    x: np.ndarray, rng: np.random.Generator, snr_db: tuple[float, float] = SSI_SNR_DB
) -> np.ndarray:
    """Algorithm 3: coloured (multi-band filtered) Gaussian noise at an SNR drawn from
    ``snr_db``, measured over the whole clip. A silent clip stays silent."""
    x64 = require_mono(x).astype(np.float64)
    noise = _filter(rng.standard_normal(x64.size), multiband_filter(rng, 0.0))
    snr = rng.uniform(*snr_db)
    norm_x, norm_n = float(np.linalg.norm(x64)), float(np.linalg.norm(noise))
    if norm_n > 0.0:
        noise *= norm_x / norm_n / 10.0 ** (snr / 20.0)
    return peak_normalize(x64 + noise)


def rawboost(x: np.ndarray, rng: np.random.Generator, algo: int = 5) -> np.ndarray:
    """The paper's algorithm ``algo`` (1-8, see the module docstring); 5 = LnL then ISD."""
    require_mono(x)
    if algo not in ALGOS:
        raise ValueError(f"RawBoost algo must be one of {sorted(ALGOS)}, not {algo}")
    if algo == 8:  # parallel: both from the clean input, summed
        return peak_normalize(
            rawboost_lnl(x, rng).astype(np.float64) + rawboost_isd(x, rng).astype(np.float64)
        )
    steps: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
        "lnl": rawboost_lnl,
        "isd": rawboost_isd,
        "ssi": rawboost_ssi,
    }
    y = x
    for name in ALGOS[algo].split("+"):
        y = steps[name](y, rng)
    return y
