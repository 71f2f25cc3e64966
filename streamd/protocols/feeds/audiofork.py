"""FreeSWITCH mod_audio_fork (websocket subprotocol ``audio.drachtio.org``), sans-I/O.

``uuid_audio_fork <uuid> start <url> <mix-type> <8k|16k> [metadata]`` connects, sends the
metadata as the first text frame (only when it is non-empty; by convention a JSON object),
then streams binary frames of raw 16-bit linear PCM in the host's byte order (little-endian
on every platform FreeSWITCH ships on). The mix type and rate are *not* on the wire: they come
from the metadata when the dialplan puts them there, else from this daemon's config.

- ``mono``: one channel, the caller (leg ``caller``);
- ``mixed``: one channel, both parties (leg ``mixed``);
- ``stereo``: interleaved, caller left (leg ``caller``), callee right (leg ``agent``).

Later text frames (``uuid_audio_fork ... send_text``, or the ``stop`` metadata) become
``Notice`` events. A binary frame that is not whole samples ends the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from streamd.protocols.feeds.base import (
    Audio,
    FeedError,
    FeedEvent,
    FeedSession,
    Notice,
    as_int,
    check_size,
    clean_labels,
    load_json_object,
    pcm16_frames,
    split_channels,
)

SUBPROTOCOL = "audio.drachtio.org"
MIX_LEGS: dict[str, tuple[str, ...]] = {
    "mono": ("caller",),
    "mixed": ("mixed",),
    "stereo": ("caller", "agent"),
}
RATES = (8000, 16000)
MAX_TEXT_BYTES = 64 * 1024
MAX_FRAME_BYTES = 64 * 1024

# Metadata keys we read settings from (dialplans spell them several ways).
RATE_KEYS = ("sampleRate", "sample_rate", "sampling", "rate")
MIX_KEYS = ("mixType", "mix_type", "mix")
CALL_ID_KEYS = ("callId", "call_id", "callid", "uuid", "callSid")


def parse_metadata(data: str | bytes, max_bytes: int = MAX_TEXT_BYTES) -> dict[str, Any]:
    """The first text frame: a JSON object, or any other text kept as ``{"metadata": text}``.

    mod_audio_fork sends whatever the dialplan gave it, so text that is not a JSON object is
    not an error; only an oversize frame is.
    """
    try:
        return load_json_object(data, max_bytes)
    except FeedError as exc:
        if exc.code == 413:
            raise
    text = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else data
    return {"metadata": text}


def rate_from(value: Any) -> int:
    """``8000``, ``"16000"``, ``"8k"`` or ``"16k"`` to a rate we accept; ``FeedError`` otherwise."""
    if isinstance(value, str) and value.lower() in ("8k", "16k"):
        value = int(value[:-1]) * 1000
    rate = as_int(value, "sample rate", low=1, high=192000)
    if rate not in RATES:
        raise FeedError(f"sample rate {rate} is not 8000 or 16000", code=415)
    return rate


class AudioForkSession(FeedSession):
    """mod_audio_fork frames in, stream events out. Never raises.

    ``sample_rate`` and ``mix`` are the defaults for what the metadata does not say;
    ``call_id`` is used when the metadata carries none (else a random one).
    """

    source = "audiofork"

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        mix: str = "mono",
        call_id: str | None = None,
        max_text_bytes: int = MAX_TEXT_BYTES,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        super().__init__()
        if mix not in MIX_LEGS:
            raise ValueError(f"mix must be one of {sorted(MIX_LEGS)}, got {mix!r}")
        self.sample_rate = rate_from(sample_rate)
        self.mix = mix
        self.call_id = call_id
        self.max_text_bytes = max_text_bytes
        self.max_frame_bytes = max_frame_bytes
        self.metadata: dict[str, Any] | None = None
        self.samples = 0

    @property
    def started(self) -> bool:
        return bool(self.streams)

    def receive_text(self, data: str | bytes) -> list[FeedEvent]:
        return self._run(self._on_text, data)

    def receive_bytes(self, data: bytes) -> list[FeedEvent]:
        return self._run(self._on_bytes, data)

    def _on_text(self, data: str | bytes) -> None:
        meta = parse_metadata(data, self.max_text_bytes)
        if self.metadata is None and not self.started:
            self.metadata = meta
            self._configure(meta)
            self._start()
        else:
            self._emit(Notice("text", clean_labels(meta)))

    def _configure(self, meta: Mapping[str, Any]) -> None:
        for key in RATE_KEYS:
            if key in meta:
                self.sample_rate = rate_from(meta[key])
                break
        for key in MIX_KEYS:
            if key in meta:
                mix = str(meta[key]).lower()
                if mix not in MIX_LEGS:
                    raise FeedError(f"mix type {mix[:20]!r} is not mono, mixed or stereo", code=415)
                self.mix = mix
                break
        for key in CALL_ID_KEYS:
            if isinstance(meta.get(key), (str, int)) and str(meta[key]):
                self.call_id = str(meta[key])[:128]
                break

    def _start(self) -> None:
        call_id = self.call_id or uuid.uuid4().hex
        self.call_id = call_id
        labels = clean_labels(self.metadata or {})
        for leg in MIX_LEGS[self.mix]:
            self._open(leg, leg, call_id, {**labels, "mix": self.mix}, self.sample_rate)

    def _on_bytes(self, data: bytes) -> None:
        check_size(data, self.max_frame_bytes, "binary frame")
        legs = MIX_LEGS[self.mix]
        frames = pcm16_frames(data, len(legs), what=f"{self.mix} L16 frame")
        if not self.started:
            self._start()  # no metadata came first: config defaults
        self.samples += frames.shape[0]
        if frames.shape[0]:
            for leg, mono in zip(legs, split_channels(frames), strict=True):
                self._emit(Audio(leg, mono))
