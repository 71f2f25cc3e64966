"""Stream identity and the one conversion every source uses: to 16 kHz mono float32, with state.

Resampling keeps soxr's filter state across chunks, because resampling each chunk on its own
clicks at every chunk boundary and changes what the model hears.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamd.errors import AudioError

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class StreamInfo:
    """Who a stream is: one call leg, one direction of one party's audio."""

    stream_id: str
    call_id: str
    leg: str
    source: str
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        *,
        source: str,
        leg: str,
        call_id: str | None = None,
        stream_id: str | None = None,
        labels: dict[str, Any] | None = None,
    ) -> StreamInfo:
        call = call_id or uuid.uuid4().hex
        sid = stream_id or f"{call}:{leg}"
        return cls(
            stream_id=sid,
            call_id=call,
            leg=leg,
            source=source,
            labels={str(k): str(v) for k, v in (labels or {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "call_id": self.call_id,
            "leg": self.leg,
            "source": self.source,
            "labels": dict(self.labels),
        }


def to_mono_float(samples: np.ndarray) -> np.ndarray:
    """Any PCM layout (int16/int32/float, ``[n]`` or ``[n, channels]``) to float32 mono
    in [-1, 1]."""
    x = np.asarray(samples)
    if x.dtype == np.int16:
        y = x.astype(np.float32) / 32768.0
    elif x.dtype == np.int32:
        y = x.astype(np.float32) / 2147483648.0
    elif x.dtype == np.uint8:
        y = (x.astype(np.float32) - 128.0) / 128.0
    else:
        y = x.astype(np.float32, copy=False)
    if y.ndim == 2:
        y = y.mean(axis=1, dtype=np.float32) if y.shape[1] > 1 else y[:, 0]
    elif y.ndim != 1:
        raise ValueError(f"audio must be [samples] or [samples, channels], got shape {x.shape}")
    return np.ascontiguousarray(y, dtype=np.float32)


class Resampler:
    """A streaming resampler to 16 kHz that keeps its filter state across chunks (soxr)."""

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE, quality: str = "HQ") -> None:
        if in_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {in_rate}")
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._stream: Any = None
        if self.in_rate != self.out_rate:
            import soxr

            self._stream = soxr.ResampleStream(
                self.in_rate, self.out_rate, 1, dtype="float32", quality=quality
            )

    def process(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return mono
        out: np.ndarray = self._stream.resample_chunk(mono, last=last)
        return out

    def flush(self) -> np.ndarray:
        return self.process(np.zeros(0, dtype=np.float32), last=True)


class AudioConverter:
    """Native PCM at any rate and layout in, 16 kHz mono float32 out: the edge of the pipeline."""

    def __init__(self, in_rate: int) -> None:
        self.resampler = Resampler(in_rate)

    def convert(self, samples: np.ndarray) -> np.ndarray:
        return self.resampler.process(to_mono_float(samples))

    def flush(self) -> np.ndarray:
        return self.resampler.flush()


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``[n, channels]`` and its rate, with one-line errors."""
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if p.is_dir():
        raise AudioError(f"{p}: is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: empty file")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types; all mean "not audio we can read"
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise AudioError(f"{p}: not a readable audio file ({msg})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{p}: contains no audio samples")
    return data, int(rate)


def load_audio(path: str | Path) -> np.ndarray:
    """A whole file as 16 kHz mono float32, converted the same way live streams are."""
    data, rate = read_audio(path)
    conv = AudioConverter(rate)
    out = conv.convert(data)
    tail = conv.flush()
    return np.concatenate([out, tail]) if tail.size else out
