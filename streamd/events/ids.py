"""Event ids that are never handed out twice, even when the store cannot write.

The event log (``store.py``) writes from a thread and may fail (a full disk, a lock held by
another process), yet an alert must still go out live. Its id therefore cannot come from the
database: a crash after failed writes would hand the same ids to new events, and a client that
resumes with ``since=`` would silently skip them. Ids come from here instead. The high-water
mark is reserved ahead, in blocks, in a small fixed-size file that is overwritten in place and
fsynced (overwriting allocated blocks needs no free space). After a crash the next run starts
past the whole reserved block, so ids may jump but never repeat; a clean close gives the unused
part of the block back, so ordinary restarts leave no gap.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("streamd.store")

BLOCK = 1000  # ids reserved per fsync
_WIDTH = 20  # digits in the file: a fixed size, so every write overwrites the same bytes


class IdReservationError(OSError):
    """The reservation file cannot be read or written."""


class IdCounter:
    """Hands out increasing ids; every id handed out is covered by a reservation on disk."""

    def __init__(self, path: str | Path, floor: int, block: int = BLOCK) -> None:
        self.path = Path(path)
        self.block = block
        self._lock = threading.Lock()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise IdReservationError(
                exc.errno, f"cannot open {self.path}: {exc.strerror}"
            ) from None
        reserved = self._read()
        if reserved > floor:
            log.warning(
                "store: the last run ended without closing the store; ids continue after %d "
                "(ids up to %d may have been sent live without being stored)",
                reserved,
                reserved,
            )
        self._next = max(floor, reserved) + 1
        self._reserved = self._next - 1
        self._write(self._reserved)  # a fresh file gets its fixed size now, while there is room

    def _read(self) -> int:
        raw = os.pread(self._fd, _WIDTH + 1, 0).strip()
        if not raw:
            return 0
        try:
            return int(raw)
        except ValueError:
            raise IdReservationError(0, f"{self.path} is corrupt: {raw[:40]!r}") from None

    def _write(self, upto: int) -> None:
        os.pwrite(self._fd, f"{upto:0{_WIDTH}d}\n".encode(), 0)
        os.fsync(self._fd)

    @property
    def last(self) -> int:
        """The highest id handed out so far."""
        return self._next - 1

    def take(self) -> int:
        """The next id. Reserves a new block first when the current one is used up."""
        with self._lock:
            if self._next > self._reserved:
                self._reserve_locked(self._next + self.block - 1)
            value = self._next
            self._next += 1
            return value

    def needs_top_up(self) -> bool:
        """True when less than half a block is left, so a thread can reserve ahead."""
        return self._reserved - self._next < self.block // 2

    def top_up(self) -> None:
        """Reserve the next block ahead of use (called from the store's writer thread)."""
        with self._lock:
            if self._reserved - self._next < self.block // 2:
                self._reserve_locked(self._reserved + self.block)

    def _reserve_locked(self, upto: int) -> None:
        try:
            self._write(upto)
        except OSError as exc:
            raise IdReservationError(
                exc.errno, f"cannot reserve event ids in {self.path}: {exc.strerror}"
            ) from None
        self._reserved = upto

    def close(self) -> None:
        """Give back the unused ids: after a clean close the next run continues without a gap."""
        with self._lock:
            try:
                self._write(self._next - 1)
            except OSError as exc:
                log.warning("store: could not release unused ids in %s: %s", self.path, exc)
            os.close(self._fd)
