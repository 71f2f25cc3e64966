"""``streamd mic``: desktop mic test mode through the daemon's own path, shown live in the terminal.

The microphone becomes one stream on an in-process hub (same VAD, windows, shared scorer and
smoother as ``streamd run``); a bus sink feeds the view instead of a websocket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import TYPE_CHECKING, Any

from streamd.app.logs import setup_logging
from streamd.cli.common import add_config_args, config_from_args
from streamd.errors import UsageError

if TYPE_CHECKING:
    from streamd.config import Config
    from streamd.ingest.mic import InputDevice
    from streamd.model.session import Detector


def register(sub: Any) -> None:
    p = sub.add_parser(
        "mic",
        help="desktop mic test mode: level meter, speech indicator, window scores, alert state",
        description=(
            "Score this computer's microphone live through the daemon's own path (resampling to "
            "16 kHz, VAD, speech windows, the scorer, smoothing and alert hysteresis) and show, "
            "updated in place: the input level in dBFS, whether speech is heard, each window's "
            "p_fake as it arrives, the smoothed score and the alert state. Needs PortAudio "
            "(Debian/Ubuntu: apt install libportaudio2). Exit code 2 when the device is missing."
        ),
    )
    p.add_argument(
        "--device",
        metavar="NAME_OR_INDEX",
        help=(
            "input device: an index or (part of) a name from --list-devices "
            "(default: sources.mic.device, else the system default)"
        ),
    )
    p.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    p.add_argument(
        "--json",
        action="store_true",
        help="plain JSON lines: throttled level updates, window and alert events",
    )
    p.add_argument(
        "--seconds", type=float, metavar="N", help="stop after N seconds (default: until Ctrl-C)"
    )
    add_config_args(p)
    p.set_defaults(func=run)


def list_devices(as_json: bool) -> int:
    from streamd.ingest.mic import MicDeviceError, list_input_devices

    devices = list_input_devices()
    if not devices:
        raise MicDeviceError(
            "no audio input device found: PortAudio sees no device that can record"
        )
    for d in devices:
        if as_json:
            print(
                json.dumps(
                    {
                        "index": d.index,
                        "name": d.name,
                        "hostapi": d.hostapi,
                        "channels": d.channels,
                        "default_rate": d.default_rate,
                        "default": d.is_default,
                    }
                )
            )
        else:
            print(f"{'*' if d.is_default else ' '} {d.describe()}")
    return 0


def run(args: argparse.Namespace) -> int:
    from streamd.app.daemon import load_detector
    from streamd.ingest.mic import resolve_device

    cfg = config_from_args(args)
    setup_logging(args.log_level or "warning", cfg.logging.format, cfg.logging.file)
    if args.seconds is not None and args.seconds <= 0:
        raise UsageError("--seconds: must be a positive number")
    if args.list_devices:
        return list_devices(args.json)
    device = resolve_device(args.device if args.device is not None else cfg.sources.mic.device)
    detector = load_detector(cfg)
    return asyncio.run(_run(cfg, detector, device, args.json, args.seconds))


async def _wait(stop: asyncio.Event, seconds: float | None) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _run(
    cfg: Config, detector: Detector, device: InputDevice, as_json: bool, seconds: float | None
) -> int:
    from streamd.cli.mic_view import JsonLines, MicView
    from streamd.events.bus import EventBus
    from streamd.ingest.mic import MicSource
    from streamd.pipeline.hub import StreamHub
    from streamd.pipeline.scorer import Scorer

    bus = EventBus()
    scorer = Scorer(detector, cfg.model.batch_max, cfg.model.batch_wait_ms)
    await scorer.start()
    hub = StreamHub(cfg, detector, scorer, bus)
    view = MicView(device.name, 0, detector.name, hub.thresholds)
    lines = JsonLines(view) if as_json else None
    bus.add_sink(lines.event if lines else view.event)
    source = MicSource(
        device.index, cfg.sources.mic.sample_rate, on_audio=lines.audio if lines else view.audio
    )
    from rich.console import Console

    console = Console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await source.start(hub)
        assert source.capture is not None
        view.rate = source.capture.rate
        if lines is not None:
            lines.write(
                {
                    "type": "mic.started",
                    "device": device.name,
                    "rate": view.rate,
                    "model": detector.name,
                    "provider": detector.provider,
                    "thresholds": {"raise": view.raise_, "clear": view.clear},
                }
            )
            await _wait(stop, seconds)
            await source.stop()
        else:
            from rich.live import Live

            with Live(
                get_renderable=view.render, refresh_per_second=8, console=console, transient=False
            ):
                await _wait(stop, seconds)
                await source.stop()  # the last windows are scored while the view is still live
    finally:
        await source.stop()
        await scorer.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    capture = source.capture
    if lines is not None and capture is not None:
        lines.write(
            {
                "type": "mic.stopped",
                "dropped_blocks": capture.dropped_blocks,
                "dropped_s": round(capture.dropped_samples / max(1, capture.rate), 3),
                "portaudio_overflows": capture.portaudio_overflows,
            }
        )
    if lines is None and view.ended is not None:
        s = view.ended
        verdict = (
            "FAKE (alert raised)"
            if s.get("alert_raised")
            else "no alert"
            if s.get("windows")
            else "not enough speech"
        )
        dropped = (
            f", {capture.dropped_blocks} blocks dropped"
            if capture and capture.dropped_blocks
            else ""
        )
        console.print(
            f"{s.get('duration_s', 0):.1f} s recorded, {s.get('speech_s', 0):.1f} s "
            f"speech, {s.get('windows', 0)} windows, max p_fake "
            f"{s['max_score'] if s.get('max_score') is not None else '-'}: {verdict}{dropped}",
            highlight=False,
        )
    sys.stdout.flush()
    return 0
