"""Logging: text for people, JSON lines for log shippers; a log file follows logrotate.

``logging.file`` is written through `logging.handlers.WatchedFileHandler`, which notices on the
next record that logrotate renamed or removed the file and opens a new one, so no reload is needed;
SIGHUP (``systemctl reload``) calls `reopen_log_files` to reopen at once.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from typing import Any

from streamd.events.schema import utc_timestamp


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str = "info", fmt: str = "text", file: str | None = None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    handler: logging.Handler = (
        logging.handlers.WatchedFileHandler(file, encoding="utf-8")
        if file
        else logging.StreamHandler(sys.stderr)
    )
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def reopen_log_files() -> int:
    """Reopen every log file that was renamed or removed (SIGHUP); returns how many were."""
    n = 0
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            before = handler.stream
            handler.reopenIfNeeded()
            n += handler.stream is not before
    return n
