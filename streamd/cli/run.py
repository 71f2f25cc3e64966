"""``streamd run``: the daemon in the foreground (what systemd runs)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streamd.app.logs import setup_logging
from streamd.cli.common import add_config_args, config_from_args


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the daemon in the foreground",
        description=(
            "Run the daemon: load the model, start the HTTP/websocket server (server.*) and every "
            "enabled source (sources.*), score speech windows and publish events. Stops cleanly on "
            "SIGTERM/SIGINT: ends every stream, flushes the event store, exits 0."
        ),
    )
    add_config_args(p)
    p.add_argument(
        "--events-stdout",
        action="store_true",
        help="also print every event as a JSON line on stdout",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamd.app.service import run_daemon

    cfg = config_from_args(args)
    setup_logging(cfg.logging.level, cfg.logging.format, cfg.logging.file)
    return asyncio.run(run_daemon(cfg, stdout_events=args.events_stdout or not cfg.server.enabled))
