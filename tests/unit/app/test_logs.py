"""The log file follows logrotate: a rename (or removal) then a write lands in a new file."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamd.app.logs import reopen_log_files, setup_logging


@pytest.fixture
def root_logging() -> Iterator[None]:
    """setup_logging replaces the root handlers; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_rename_then_write_lands_in_a_new_file(tmp_path: Path, root_logging: None) -> None:
    path = tmp_path / "streamd.log"
    setup_logging("info", "text", str(path))
    log = logging.getLogger("streamd.test")
    log.info("before rotation")
    rotated = path.rename(tmp_path / "streamd.log.1")  # logrotate's default (create) mode
    log.info("after rotation")
    assert "before rotation" in rotated.read_text() and "after rotation" not in rotated.read_text()
    assert "after rotation" in path.read_text() and "before rotation" not in path.read_text()

    path.unlink()  # removed outright: the next record recreates it
    log.warning("after removal")
    assert "after removal" in path.read_text()


def test_sighup_reopens_at_once(tmp_path: Path, root_logging: None) -> None:
    path = tmp_path / "streamd.log"
    setup_logging("info", "json", str(path))
    logging.getLogger("streamd.test").info("one")
    assert reopen_log_files() == 0  # nothing moved
    path.rename(tmp_path / "streamd.log.1")
    assert reopen_log_files() == 1 and path.exists()  # a new, empty file before any record
    logging.getLogger("streamd.test").info("two")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["logger"], x["msg"]) for x in lines] == [("streamd.test", "two")]


def test_stderr_logging_has_no_file_to_reopen(root_logging: None) -> None:
    setup_logging("warning", "text", None)
    assert reopen_log_files() == 0 and logging.getLogger().level == logging.WARNING
