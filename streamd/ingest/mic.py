"""A microphone as a stream, with sounddevice (PortAudio): ``sources.mic`` and ``streamd mic``.

PortAudio calls back on its own thread. Each block goes to the event loop with
``call_soon_threadsafe`` into a bounded queue; when the loop falls behind, blocks are dropped and
counted, and the consumer writes silence of the same length, so stream time stays wall time.
The device records at its own rate and the stream resamples it, so a rate mismatch never fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from streamd.errors import StreamdError, UsageError
from streamd.ingest.base import Source
from streamd.pipeline.audio import StreamInfo

if TYPE_CHECKING:
    from streamd.config import Config
    from streamd.pipeline.hub import StreamHub
    from streamd.pipeline.stream import StreamPipeline

log = logging.getLogger("streamd.ingest.mic")

PORTAUDIO_HINT = "install libportaudio2 (Debian/Ubuntu: apt install libportaudio2)"
BLOCK_S = 0.02
QUEUE_BLOCKS = 250  # 5 s of audio before blocks are dropped


class MicDeviceError(UsageError):
    """No input device, or none matches what was asked for (exit code 2)."""


def import_sounddevice() -> Any:
    """sounddevice, imported only when a microphone is used; its absence is one clear line."""
    try:
        import sounddevice
    except OSError as exc:  # the module loads libportaudio at import time
        raise StreamdError(f"PortAudio library not found: {PORTAUDIO_HINT} ({exc})") from None
    except ImportError:
        raise StreamdError(
            "the sounddevice module is missing: pip install 'streamd[mic]'"
        ) from None
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    hostapi: str
    channels: int
    default_rate: int
    is_default: bool = False

    def describe(self) -> str:
        return (
            f"{self.index}: {self.name} ({self.hostapi}, "
            f"{self.channels} ch, {self.default_rate} Hz)"
        )


def list_input_devices(sd: Any | None = None) -> list[InputDevice]:
    sd = sd or import_sounddevice()
    apis = [a["name"] for a in sd.query_hostapis()]
    try:
        default_in = int(sd.default.device[0])
    except (TypeError, ValueError, IndexError):
        default_in = -1
    out = []
    for d in sd.query_devices():
        if int(d["max_input_channels"]) > 0:
            api = apis[d["hostapi"]] if 0 <= d["hostapi"] < len(apis) else "?"
            out.append(
                InputDevice(
                    int(d["index"]),
                    str(d["name"]),
                    api,
                    int(d["max_input_channels"]),
                    round(float(d["default_samplerate"])),
                    int(d["index"]) == default_in,
                )
            )
    return out


def resolve_device(spec: str | int | None, sd: Any | None = None) -> InputDevice:
    """The input device for ``--device``/``sources.mic.device``: an index, a name, or a unique part
    of one."""
    devices = list_input_devices(sd)
    if not devices:
        raise MicDeviceError(
            "no audio input device found: PortAudio sees no device that can record "
            "(is a microphone connected, and is PulseAudio/PipeWire running?)"
        )
    names = "; ".join(d.describe() for d in devices)
    if spec is None or spec == "":
        return next((d for d in devices if d.is_default), devices[0])
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        match = [d for d in devices if d.index == int(text)]
        if not match:
            raise MicDeviceError(
                f"device {text}: no input device has this index; input devices: {names}"
            )
        return match[0]
    exact = [d for d in devices if d.name.lower() == text.lower()]
    match = exact or [d for d in devices if text.lower() in d.name.lower()]
    if not match:
        raise MicDeviceError(f"device {text!r}: no input device matches; input devices: {names}")
    if len(match) > 1:
        raise MicDeviceError(
            f"device {text!r}: matches {len(match)} input devices, give an index: "
            + "; ".join(d.describe() for d in match)
        )
    return match[0]


def level_dbfs(samples: np.ndarray) -> tuple[float, float]:
    """RMS and peak level of float samples in dB full scale (-100 for digital silence)."""
    if samples.size == 0:
        return -100.0, -100.0
    x = samples.astype(np.float32, copy=False)
    rms = float(np.sqrt(np.mean(np.square(x))))
    peak = float(np.max(np.abs(x)))
    return (
        20 * math.log10(rms) if rms > 1e-5 else -100.0,
        20 * math.log10(peak) if peak > 1e-5 else -100.0,
    )


class MicCapture:
    """An open PortAudio input stream whose blocks come out of ``read()`` on the event loop."""

    def __init__(
        self, device: InputDevice, sample_rate: int | None = None, queue_blocks: int = QUEUE_BLOCKS
    ) -> None:
        self.device = device
        self.requested_rate = sample_rate
        self.rate = 0
        self.channels = 1
        self.queue_blocks = queue_blocks
        self.dropped_blocks = 0
        self.dropped_samples = 0
        self.portaudio_overflows = 0
        self._queue: asyncio.Queue[tuple[int, np.ndarray] | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stream: Any = None
        self._owed = 0  # dropped samples not yet written back as silence

    def _settings(self, sd: Any) -> tuple[int, int]:
        """A rate and channel count the device takes: the requested rate, else its own."""
        rates = [
            r for r in (self.requested_rate, self.device.default_rate, 48000, 44100, 16000) if r
        ]
        for channels in dict.fromkeys((1, min(2, self.device.channels))):
            for rate in dict.fromkeys(rates):
                try:
                    sd.check_input_settings(
                        device=self.device.index,
                        channels=channels,
                        samplerate=rate,
                        dtype="float32",
                    )
                except Exception:
                    continue
                if self.requested_rate and rate != self.requested_rate:
                    log.warning(
                        "device %s does not take %d Hz: recording at %d Hz and resampling",
                        self.device.name,
                        self.requested_rate,
                        rate,
                    )
                return rate, channels
        return self.device.default_rate, 1

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that PortAudio's thread hands blocks to (``open`` calls it)."""
        self._loop = loop
        self._queue = asyncio.Queue(self.queue_blocks)

    @property
    def running(self) -> bool:
        return self._stream is not None

    def open(self) -> None:
        sd = import_sounddevice()
        self.bind(asyncio.get_running_loop())
        self.rate, self.channels = self._settings(sd)
        try:
            self._stream = sd.InputStream(
                device=self.device.index,
                channels=self.channels,
                samplerate=self.rate,
                dtype="float32",
                blocksize=max(1, int(self.rate * BLOCK_S)),
                callback=self._callback,
            )
            self._stream.start()
        except Exception as exc:  # sd.PortAudioError, or ValueError for bad settings
            self._stream = None
            msg = str(exc)
            if any(s in msg.lower() for s in ("unavailable", "busy", "-9985", "-9993")):
                raise StreamdError(
                    f"input device {self.device.name!r} is busy or unavailable "
                    f"(another program may be using it, or it was unplugged): {msg}"
                ) from None
            raise StreamdError(f"cannot open input device {self.device.name!r}: {msg}") from None
        log.info(
            "recording from %s at %d Hz, %d channel(s)",
            self.device.describe(),
            self.rate,
            self.channels,
        )

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's thread: copy the block (the buffer is reused) and hand it to the loop.
        if status and getattr(status, "input_overflow", False):
            self.portaudio_overflows += 1
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(self._put, indata.copy())

    def _put(self, block: np.ndarray | None) -> None:
        """On the loop: queue the block, or drop it and owe its length as silence before the next
        one."""
        assert self._queue is not None
        if block is None:
            if self._queue.full():
                self._queue.get_nowait()  # room for the end marker: stopping beats the last block
            self._queue.put_nowait(None)
            return
        if self._queue.full():
            self.dropped_blocks += 1
            self.dropped_samples += len(block)
            self._owed += len(block)
            return
        owed, self._owed = self._owed, 0
        self._queue.put_nowait((owed, block))

    async def read(self) -> tuple[int, np.ndarray] | None:
        """``(silence_to_write_first, block)``, or ``None`` once closed."""
        assert self._queue is not None
        return await self._queue.get()

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.stop()
            with contextlib.suppress(Exception):
                stream.close()
        if self._queue is not None:
            self._put(None)


class MicSource(Source):
    """``sources.mic``: one stream (``source: mic``, ``leg: mic``) for as long as the daemon
    runs."""

    name = "mic"

    def __init__(
        self,
        device: str | int | None = None,
        sample_rate: int | None = None,
        on_audio: Callable[[StreamPipeline, np.ndarray], None] | None = None,
    ) -> None:
        self.device_spec = device
        self.sample_rate = sample_rate
        self.on_audio = on_audio
        self.capture: MicCapture | None = None
        self.stream: StreamPipeline | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: Config) -> MicSource:
        m = config.sources.mic
        return cls(m.device, m.sample_rate)

    async def start(self, hub: StreamHub) -> None:
        await super().start(hub)
        device = await asyncio.to_thread(resolve_device, self.device_spec)
        self.capture = MicCapture(device, self.sample_rate)
        self.capture.open()
        info = StreamInfo.new(
            source="mic", leg="mic", labels={"device": device.name, "rate": str(self.capture.rate)}
        )
        try:
            self.stream = hub.open_stream(info, self.capture.rate)
        except Exception:
            self.capture.close()
            raise
        self._task = asyncio.create_task(self._pump(self.capture, self.stream), name="mic")

    async def _pump(self, capture: MicCapture, stream: StreamPipeline) -> None:
        while (item := await capture.read()) is not None:
            owed, block = item
            if owed:
                stream.write_silence(owed)
                stream.note_lost(max(1, owed // max(1, len(block))))
            stream.write(block)
            if self.on_audio is not None:
                self.on_audio(stream, block)

    async def stop(self) -> None:
        if self.capture is not None:
            self.capture.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        stream, self.stream = self.stream, None
        if stream is not None:
            await stream.close("stopped")

    def status(self) -> dict[str, Any]:
        c = self.capture
        return {
            "name": self.name,
            "up": c is not None and c.running,
            "device": c.device.name if c else self.device_spec,
            "rate": c.rate if c else None,
            "dropped_blocks": c.dropped_blocks if c else 0,
            "portaudio_overflows": c.portaudio_overflows if c else 0,
        }
