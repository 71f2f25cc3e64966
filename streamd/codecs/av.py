"""G.722 and Opus through PyAV (FFmpeg), the codecs too intricate to write here.

PyAV is imported only when a G.722 or Opus decoder is made, so G.711/L16-only deployments never
load it. The Opus TOC parser is ours: the jitter buffer needs a packet's duration before decoding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamd.codecs.base import CodecError, Decoder

# Opus frame durations in 48 kHz samples, by TOC config number (RFC 6716 §3.1, table 2).
_OPUS_FRAME = (
    [480, 960, 1920, 2880] * 3  # SILK NB/MB/WB: 10, 20, 40, 60 ms
    + [480, 960] * 2  # Hybrid SWB/FB: 10, 20 ms
    + [120, 240, 480, 960] * 4  # CELT NB/WB/SWB/FB: 2.5, 5, 10, 20 ms
)


def opus_packet_samples(payload: bytes) -> int:
    """48 kHz samples in one Opus packet, from its TOC byte (RFC 6716 §3.1-3.2)."""
    if not payload:
        raise CodecError("empty Opus packet")
    toc = payload[0]
    frame = _OPUS_FRAME[toc >> 3]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        if len(payload) < 2:
            raise CodecError("Opus code-3 packet without a frame count byte")
        count = payload[1] & 0x3F
        if count == 0:
            raise CodecError("Opus code-3 packet with zero frames")
    total = frame * count
    if total > 5760:  # 120 ms
        raise CodecError("Opus packet longer than 120 ms")
    return total


class _AvDecoder(Decoder):
    """Shared PyAV plumbing: one long-lived CodecContext, frames converted to interleaved int16."""

    _av_names: tuple[str, ...] = ()

    def __init__(self, clock_rate: int, channels: int, sample_rate: int) -> None:
        super().__init__(clock_rate, channels, sample_rate)
        self._context: Any = None
        self._packet: Any = None
        self._av_error: tuple[type[BaseException], ...] = (ValueError,)
        self._open()

    def _open(self) -> None:
        try:
            import av
        except ImportError as exc:  # pragma: no cover - av ships with aiortc
            raise CodecError(f"{self.encoding} needs PyAV (pip install av)") from exc
        self._av_error = (av.FFmpegError, ValueError)
        self._packet = av.Packet
        last: Exception | None = None
        for name in self._av_names:
            try:
                context: Any = av.CodecContext.create(name, "r")
            except (av.FFmpegError, ValueError) as exc:
                last = exc
                continue
            context.sample_rate = self.sample_rate
            context.layout = "mono" if self._decoder_channels() == 1 else "stereo"
            self._context = context
            return
        raise CodecError(f"no FFmpeg decoder for {self.encoding} ({last})")

    def _decoder_channels(self) -> int:
        return 1

    def reset(self) -> None:
        self._open()

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:  # an empty packet would put libavcodec into draining mode
            return self._shape(np.zeros(0, dtype=np.int16))
        try:
            frames = self._context.decode(self._packet(bytes(payload)))
            chunks = [self._frame_to_int16(frame) for frame in frames]
        except self._av_error as exc:
            raise CodecError(f"{self.encoding}: payload does not decode: {exc}") from exc
        if not chunks:
            return self._shape(np.zeros(0, dtype=np.int16))
        return self._shape(np.concatenate(chunks).reshape(-1))

    def _frame_to_int16(self, frame: Any) -> np.ndarray:
        array: np.ndarray = frame.to_ndarray()
        got = len(frame.layout.channels)
        # Planar frames come as [channels, n], packed ones as [1, n * channels].
        samples = array.T if frame.format.is_planar else array.reshape(-1, got)
        if samples.dtype.kind == "f":
            samples = np.clip(np.round(samples * 32768.0), -32768, 32767)
        elif samples.dtype == np.int32:
            samples = samples >> 16
        samples = samples.astype(np.int16)
        if got != self.channels:
            if self.channels == 1:
                samples = samples.astype(np.int32).mean(axis=1, keepdims=True).astype(np.int16)
            elif got == 1:
                samples = np.repeat(samples, self.channels, axis=1)
            else:
                raise CodecError(f"{self.encoding}: decoder gave {got} channels")
        return samples.reshape(-1)


class G722Decoder(_AvDecoder):
    """G.722 at 64 kbit/s: 16 kHz audio, 8 kHz RTP clock, one byte per clock tick."""

    encoding = "G722"
    _av_names = ("g722",)

    def __init__(self, clock_rate: int, channels: int) -> None:
        if channels != 1:
            raise CodecError("G722 is mono")
        super().__init__(clock_rate, 1, 16000)

    def duration(self, payload: bytes) -> int | None:
        return round(len(payload) * 2 / self.samples_per_timestamp)


class OpusDecoder(_AvDecoder):
    """Opus: 48 kHz clock and output (RFC 7587); output has ``channels`` channels."""

    encoding = "opus"
    _av_names = ("libopus", "opus")

    def __init__(self, clock_rate: int, channels: int) -> None:
        if clock_rate != 48000:
            raise CodecError("opus has a 48000 Hz RTP clock (RFC 7587)")
        super().__init__(clock_rate, channels, 48000)

    def _decoder_channels(self) -> int:
        return 1 if self.channels == 1 else 2

    def duration(self, payload: bytes) -> int | None:
        try:
            return opus_packet_samples(payload)
        except CodecError:
            return None
