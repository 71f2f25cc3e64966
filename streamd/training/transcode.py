"""Codec round trips a call really crosses, through PyAV's FFmpeg: G.722, Opus, AMR-NB, MP3.

Each function takes 16 kHz mono float32 and returns 16 kHz float32 of the same length: the audio
is resampled (soxr, as the daemon does) to the encoder's rate, encoded and decoded with FFmpeg's
own codecs, resampled back, and shifted by the codec's delay so that output sample i lines up
with input sample i. The delay is not a table of constants (it differs between FFmpeg builds):
it is measured once per codec and rate by cross-correlating a fixed band-limited noise through
the same round trip, and cached (``codec_delay``). Opus gets the encoder's header as decoder
extradata and MP3 packets carry FFmpeg's skip-samples side data, so their measured delay is ~0;
G.722 (QMF bank) and AMR-NB (5 ms look-ahead) keep a real one.

What PyAV's wheels (FFmpeg 7/8 with libopus, libmp3lame, libopencore-amrnb/wb) provide here:
encoders ``g722``, ``libopus``, ``libopencore_amrnb``, ``libmp3lame``; there is no GSM encoder
(FFmpeg has only a GSM decoder, and its ``libgsm`` wrapper is not in the wheel), so AMR-NB is
the mobile narrowband codec. ``transport_codecs()`` says which of them this build has.

PyAV is imported when a codec is first used, so importing this module costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Any, Literal

import numpy as np
import soxr

from streamd.training.mono import SAMPLE_RATE, align, require_mono

AMR_NB_MODES = (4750, 5150, 5900, 6700, 7400, 7950, 10200, 12200)  # bit/s, 3GPP TS 26.071
OPUS_KBPS = (6.0, 24.0)
OPUS_RATES = (8000, 16000)  # narrowband (8 kHz input) or wideband, as VoIP apps run it
MP3_KBPS = (16, 24, 32)  # the MPEG-2 layer III steps between 16 and 32 kbit/s
MP3_RATES = (16000, 22050, 24000)  # MPEG-2 (LSF) rates a low-bitrate encoder runs at
_MAX_DELAY = 4096  # samples at 16 kHz searched when measuring a codec's delay


class CodecUnavailable(RuntimeError):
    """This PyAV/FFmpeg build lacks the encoder or decoder a channel needs."""


@dataclass(frozen=True)
class _Codec:
    encoder: str
    decoder: str
    rate: int  # the encoder's sample rate
    sample_format: str  # what the encoder takes
    calibration_bit_rate: int
    options: tuple[tuple[str, str], ...] = ()


_G722 = _Codec("g722", "g722", 16000, "s16", 64000)
_AMR_NB = _Codec("libopencore_amrnb", "amrnb", 8000, "s16", 12200)


def _opus(rate: int) -> _Codec:
    return _Codec("libopus", "libopus", rate, "s16", 24000, (("application", "voip"),))


def _mp3(rate: int) -> _Codec:
    return _Codec("libmp3lame", "mp3", rate, "s16p", 32000)


def _context(name: str, mode: Literal["r", "w"]) -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av ships with aiortc
        raise CodecUnavailable("codec channels need PyAV (pip install av)") from exc
    try:
        return av.CodecContext.create(name, mode)
    except (av.FFmpegError, ValueError) as exc:
        kind = "encoder" if mode == "w" else "decoder"
        raise CodecUnavailable(f"this FFmpeg build has no {name} {kind}") from exc


def _transcode(codec: _Codec, x16: np.ndarray, bit_rate: int) -> np.ndarray:
    """One unaligned round trip: 16 kHz float in, 16 kHz float64 out (longer by the delay)."""
    import av

    x = x16 if codec.rate == SAMPLE_RATE else soxr.resample(x16, SAMPLE_RATE, codec.rate)
    pcm = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767)
    enc = _context(codec.encoder, "w")
    enc.sample_rate = codec.rate
    enc.layout = "mono"
    enc.format = codec.sample_format
    enc.bit_rate = bit_rate
    enc.time_base = Fraction(1, codec.rate)
    if codec.options:
        enc.options = dict(codec.options)
    enc.open()
    step = enc.frame_size or 1024
    total = -(-pcm.size // step) * step  # whole frames: the last one zero-padded
    pcm16 = np.pad(pcm, (0, total - pcm.size)).astype(np.int16).reshape(1, -1)
    packets = []
    for i in range(0, total, step):
        frame = av.AudioFrame.from_ndarray(
            pcm16[:, i : i + step], format=codec.sample_format, layout="mono"
        )
        frame.sample_rate = codec.rate
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    dec = _context(codec.decoder, "r")
    dec.sample_rate = codec.rate
    dec.layout = "mono"
    if enc.extradata:  # Opus: the header's pre-skip makes the decoder drop the look-ahead
        dec.extradata = enc.extradata
    chunks, out_rate = [], codec.rate
    for packet in packets:
        for frame in dec.decode(packet):
            a = frame.to_ndarray().reshape(-1)
            chunks.append(a / 32768.0 if a.dtype.kind == "i" else a.astype(np.float64))
            out_rate = frame.sample_rate
    y = np.concatenate(chunks) if chunks else np.zeros(0)
    return np.asarray(y if out_rate == SAMPLE_RATE else soxr.resample(y, out_rate, SAMPLE_RATE))


@cache
def codec_delay(codec: _Codec) -> int:
    """The codec's output lag in 16 kHz samples, measured once: the peak of the cross-correlation
    of a fixed 300-3400 Hz noise with its round trip."""
    rng = np.random.default_rng(20240917)
    n = SAMPLE_RATE
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spectrum[(f < 300) | (f > 3400)] = 0.0
    probe = np.fft.irfft(spectrum, n)
    probe = (0.2 * probe / np.max(np.abs(probe))).astype(np.float32)
    y = _transcode(codec, probe, codec.calibration_bit_rate)
    m = min(y.size, n + _MAX_DELAY)
    corr = np.fft.irfft(np.fft.rfft(y[:m], 2 * m) * np.conj(np.fft.rfft(probe, 2 * m)), 2 * m)
    lags = np.r_[np.arange(0, _MAX_DELAY), np.arange(-64, 0)]  # small negative lags allowed
    return int(lags[np.argmax(corr[lags])])


def _roundtrip(codec: _Codec, x: np.ndarray, bit_rate: int) -> np.ndarray:
    x = require_mono(x)
    return align(_transcode(codec, x, bit_rate), x.size, codec_delay(codec))


def g722_step(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    del rng  # FFmpeg's G.722 encoder runs at 64 kbit/s only: nothing to draw
    return _roundtrip(_G722, x, 64000), "G.722 64 kbit/s"


def opus_step(
    x: np.ndarray, rng: np.random.Generator, rate: int | None = None
) -> tuple[np.ndarray, str]:
    kbps = float(rng.uniform(*OPUS_KBPS))
    sr = int(rng.choice(OPUS_RATES)) if rate is None else rate
    if sr not in OPUS_RATES:
        raise ValueError(f"Opus rate must be one of {OPUS_RATES}, not {sr}")
    band = "NB" if sr == 8000 else "WB"
    return _roundtrip(_opus(sr), x, round(kbps * 1000)), f"Opus {band} {kbps:.1f} kbit/s"


def amr_nb_step(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    mode = int(rng.choice(AMR_NB_MODES))
    return _roundtrip(_AMR_NB, x, mode), f"AMR-NB {mode / 1000:.2f} kbit/s"


def mp3_step(
    x: np.ndarray, rng: np.random.Generator, kbps: int | None = None
) -> tuple[np.ndarray, str]:
    rate = int(rng.choice(MP3_RATES))
    k = int(rng.choice(MP3_KBPS)) if kbps is None else kbps
    if k not in MP3_KBPS:
        raise ValueError(f"MP3 bitrate must be one of {MP3_KBPS} kbit/s, not {k}")
    return _roundtrip(_mp3(rate), x, k * 1000), f"MP3 {k} kbit/s at {rate} Hz"


def g722(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """G.722 at 64 kbit/s (wideband SIP, DECT): sub-band ADPCM artefacts, 7 kHz band."""
    return g722_step(x, rng)[0]


def opus(x: np.ndarray, rng: np.random.Generator, rate: int | None = None) -> np.ndarray:
    """libopus in VoIP mode at a random 6-24 kbit/s, fed at 8 kHz (narrowband) or 16 kHz
    (wideband) as the app's capture rate decides; ``rate`` forces one."""
    return opus_step(x, rng, rate)[0]


def amr_nb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """AMR-NB (mobile networks) at one of its eight modes, 4.75-12.2 kbit/s, at 8 kHz."""
    return amr_nb_step(x, rng)[0]


def mp3(x: np.ndarray, rng: np.random.Generator, kbps: int | None = None) -> np.ndarray:
    """libmp3lame at 16, 24 or 32 kbit/s (``kbps`` forces one) at 16, 22.05 or 24 kHz: a call
    recording stored as MP3 and played back. LAME's low-pass at these rates cuts the top band."""
    return mp3_step(x, rng, kbps)[0]


def transport_codecs() -> dict[str, bool]:
    """Which of the PyAV codec channels this FFmpeg build can run (encoder and decoder)."""
    found = {}
    for name, codec in (("g722", _G722), ("opus", _opus(16000)), ("amr_nb", _AMR_NB)):
        found[name] = _has(codec)
    found["mp3"] = _has(_mp3(16000))
    return found


def _has(codec: _Codec) -> bool:
    try:
        _context(codec.encoder, "w")
        _context(codec.decoder, "r")
    except CodecUnavailable:
        return False
    return True
