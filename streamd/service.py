"""Running as a service: signals, and (with the event service) systemd notify and watchdog."""

from __future__ import annotations

import asyncio
import logging
import signal

from streamd.config import Config
from streamd.daemon import Daemon

log = logging.getLogger("streamd.service")


async def run_daemon(config: Config, stdout_events: bool = False) -> int:
    daemon = Daemon(config, stdout_events=stdout_events)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop, signal.Signals(sig).name)
    await daemon.run()
    return 0
