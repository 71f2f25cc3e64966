"""Running as a service: systemd notify and watchdog, signals, graceful shutdown, log reopening.

The notify protocol is one datagram of ``KEY=value`` lines to the unix socket in ``$NOTIFY_SOCKET``
(``@`` means the abstract namespace), so a dozen lines here replace a libsystemd dependency.
Watchdog keep-alives are sent by a task on the event loop itself: if the loop hangs, they stop and
systemd restarts the daemon (``WatchdogSec=`` with ``Restart=on-failure``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Mapping

from streamd.app.daemon import Daemon
from streamd.app.logs import reopen_log_files
from streamd.config import Config

log = logging.getLogger("streamd.app.service")

STATUS_EVERY_S = 10.0


class SystemdNotifier:
    """``sd_notify(3)`` without libsystemd; does nothing when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *lines: str) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:  # systemd gone or socket full: never fatal for the daemon
            log.debug("sd_notify %s failed: %s", lines, exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, as sd_watchdog_enabled(3) advises; None when off."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", "0") or 0)
    except ValueError:
        return None
    if usec <= 0 or (pid and pid != os.getpid()):
        return None
    return usec / 2e6


def status_line(daemon: Daemon) -> str:
    hub, scorer = daemon.hub, daemon.scorer
    listen = f", listening on {daemon.server.url}" if daemon.server else ""
    return (
        f"ready: {len(hub.streams) if hub else 0} streams, {scorer.windows if scorer else 0} "
        f"windows scored, last event {daemon.bus.last_id if daemon.bus else 0}{listen}"
    )


async def _keepalive(notifier: SystemdNotifier, daemon: Daemon, interval: float | None) -> None:
    """WATCHDOG=1 every ``interval`` and a fresh STATUS= for ``systemctl status`` now and then."""
    loop = asyncio.get_running_loop()
    next_status = loop.time()
    while True:
        lines = ["WATCHDOG=1"] if interval else []
        if daemon.ready and loop.time() >= next_status:
            lines.append("STATUS=" + status_line(daemon))
            next_status = loop.time() + STATUS_EVERY_S
        if lines:
            notifier.notify(*lines)
        await asyncio.sleep(min(interval or STATUS_EVERY_S, STATUS_EVERY_S))


async def run_daemon(config: Config, stdout_events: bool = False) -> int:
    """The daemon under a supervisor: READY=1 once serving, exit 0 after a clean SIGTERM/SIGINT."""
    daemon = Daemon(config, stdout_events=stdout_events)
    notifier = SystemdNotifier()
    loop = asyncio.get_running_loop()

    def on_stop(name: str) -> None:
        if daemon.stopping:
            log.info("%s: already stopping (grace %.1f s)", name, config.service.grace_s)
            return
        log.info("%s: stopping: no new streams, scoring what is buffered", name)
        notifier.notify("STOPPING=1", f"STATUS=stopping ({name})")
        daemon.request_stop(name)

    def on_hup() -> None:  # also keeps SIGHUP from ending the daemon
        log.info("SIGHUP: reopened %d log file(s)", reopen_log_files())

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, signal.Signals(sig).name)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    keepalive = asyncio.create_task(
        _keepalive(notifier, daemon, watchdog_interval()) if notifier.enabled else asyncio.sleep(0),
        name="sd-keepalive",
    )
    running = asyncio.create_task(daemon.run(), name="daemon")
    ready = asyncio.create_task(daemon.ready_event.wait())
    try:
        await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and not running.done():
            notifier.notify("READY=1", "STATUS=" + status_line(daemon), f"MAINPID={os.getpid()}")
        await running
    finally:
        notifier.notify("STOPPING=1")
        for task in (ready, keepalive):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        notifier.close()
    return 0
