"""L16: linear 16-bit PCM in network byte order (RFC 3551 §4.5.11)."""

from __future__ import annotations

import numpy as np

from streamd.codecs.base import Decoder


class L16Decoder(Decoder):
    """Linear 16-bit PCM in network byte order, channels interleaved (RFC 3551 §4.5.11)."""

    encoding = "L16"

    def __init__(self, clock_rate: int, channels: int) -> None:
        super().__init__(clock_rate, channels, clock_rate)

    def decode(self, payload: bytes) -> np.ndarray:
        self._check_frame_bytes(payload, 2 * self.channels)
        return self._shape(np.frombuffer(payload, dtype=">i2").astype(np.int16))

    def duration(self, payload: bytes) -> int | None:
        return len(payload) // (2 * self.channels)
