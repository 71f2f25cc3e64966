"""What every payload decoder is: RTP payload bytes in, int16 PCM out, state kept across packets.

A decoder is made once per stream and keeps its state across packets: G.722 is ADPCM and Opus
has inter-frame prediction, so decoding each packet with a fresh decoder would click.

Two rates matter and they are not always equal. ``clock_rate`` is the RTP timestamp clock from
the SDP; ``sample_rate`` is the rate of the decoded audio. G.722 is the classic case: its RTP
clock is 8000 (RFC 3551 §4.5.2, a historical mistake kept for compatibility) but it carries
16 kHz audio. ``samples_per_timestamp`` converts jitter-buffer gaps (in clock ticks) into samples.
"""

from __future__ import annotations

import numpy as np

from streamd.errors import ProtocolError


class CodecError(ProtocolError):
    """A codec we cannot build, or a payload that does not decode."""


class Decoder:
    """Base decoder: int16 output, ``[n]`` for mono and ``[n, channels]`` otherwise."""

    encoding: str = ""

    def __init__(self, clock_rate: int, channels: int, sample_rate: int) -> None:
        if clock_rate <= 0 or sample_rate <= 0:
            raise CodecError(f"{self.encoding}: rates must be positive")
        if not 1 <= channels <= 8:
            raise CodecError(f"{self.encoding}: {channels} channels is not 1..8")
        self.clock_rate = clock_rate
        self.channels = channels
        self.sample_rate = sample_rate

    @property
    def samples_per_timestamp(self) -> float:
        """Decoded samples (per channel) per RTP clock tick."""
        return self.sample_rate / self.clock_rate

    def decode(self, payload: bytes) -> np.ndarray:
        """Decode one packet's payload."""
        raise NotImplementedError

    def duration(self, payload: bytes) -> int | None:
        """RTP clock ticks covered by ``payload``, if the bytes alone tell (for the jitter
        buffer)."""
        return None

    def silence(self, n_clock_samples: int) -> np.ndarray:
        """Zeros for a gap of ``n_clock_samples`` RTP clock ticks, shaped like :meth:`decode`
        output."""
        n = max(0, round(n_clock_samples * self.samples_per_timestamp))
        return self._shape(np.zeros(n * self.channels, dtype=np.int16))

    def reset(self) -> None:
        """Drop inter-packet state (new source after an SSRC change)."""

    def _shape(self, interleaved: np.ndarray) -> np.ndarray:
        if self.channels == 1:
            return interleaved
        return interleaved.reshape(-1, self.channels)

    def _check_frame_bytes(self, payload: bytes, bytes_per_frame: int) -> None:
        if len(payload) % bytes_per_frame:
            raise CodecError(
                f"{self.encoding}: {len(payload)} bytes is not a whole number of "
                f"{bytes_per_frame}-byte sample frames"
            )
