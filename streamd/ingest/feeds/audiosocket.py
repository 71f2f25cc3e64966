"""Asterisk AudioSocket ingest: a TCP listener for ``AudioSocket(uuid,host:port)``.

Each connection is one channel's audio: the UUID frame names the call, signed-linear frames
carry the audio (8 kHz, or the higher rates the frame kind says), and a hangup or error frame,
or the socket closing, ends the stream. The framing lives in
``streamd.protocols.feeds.audiosocket``.

AudioSocket has no authentication, so the listener binds 127.0.0.1 by default and should only
ever be reachable from the Asterisk box. A connection that completes no frame for
``idle_timeout_s`` is dropped (Asterisk sends a frame every 20 ms while the channel is up), so
neither a peer that vanished without a FIN nor one that trickles a byte at a time can hold one
of ``max_connections`` slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from streamd.errors import StreamdError
from streamd.ingest.feeds.connection import FeedConnection, FeedLimits, FeedSource
from streamd.protocols.feeds.audiosocket import MAX_PAYLOAD, AudioSocketSession

if TYPE_CHECKING:
    from streamd.config import Config
    from streamd.pipeline.hub import StreamHub

log = logging.getLogger("streamd.ingest.feeds.audiosocket")

READ_BYTES = 64 * 1024
CLOSE_TIMEOUT_S = 5.0


class AudioSocketSource(FeedSource):
    name = "audiosocket"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9092,
        limits: FeedLimits | None = None,
        leg: str = "caller",
        idle_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(limits or FeedLimits())
        self.host = host
        self.port = port
        self.leg = leg
        self.idle_timeout_s = idle_timeout_s
        self._server: asyncio.Server | None = None

    @classmethod
    def from_config(cls, config: Config) -> AudioSocketSource:
        a = config.sources.audiosocket
        return cls(a.host, a.port, FeedLimits.of(a), a.leg, a.idle_timeout_s)

    async def start(self, hub: StreamHub) -> None:
        await super().start(hub)
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:
            raise StreamdError(
                f"sources.audiosocket.host/port: cannot listen on {self.host}:{self.port} "
                f"({exc.strerror or exc})"
            ) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("audiosocket listening on %s:%d", self.host, self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        keys = (f"addr:{peer[0]}",) if isinstance(peer, tuple) else ()
        why = self.refusal(keys)
        if why is not None:
            self.counters.refused += 1
            self.warn("audiosocket %s: connection refused: %s", name, why)
            writer.close()
            return
        session = AudioSocketSession(
            leg=self.leg, max_payload=min(self.limits.max_message_bytes, MAX_PAYLOAD)
        )

        async def close() -> None:
            writer.close()  # the pending read sees EOF; the pump returns

        conn = self.connect(name, close=close, keys=keys)
        clean = False
        try:
            clean = await self._pump(reader, session, conn)
        finally:
            await conn.finish(session, clean)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_S)

    async def _pump(
        self, reader: asyncio.StreamReader, session: AudioSocketSession, conn: FeedConnection
    ) -> bool:
        """Bytes into the session until it ends or the socket does; True on a clean close (FIN)."""
        loop = asyncio.get_running_loop()
        frames, progress_at = session.frames, loop.time()
        while True:
            if session.frames != frames:
                frames, progress_at = session.frames, loop.time()
            timeout = (
                progress_at + self.idle_timeout_s - loop.time() if self.idle_timeout_s else None
            )
            try:
                if timeout is not None and timeout <= 0:
                    raise asyncio.TimeoutError
                data = await asyncio.wait_for(reader.read(READ_BYTES), timeout)
            except asyncio.TimeoutError:
                self.counters.idle_dropped += 1
                self.warn("%r: no complete frame for %.1f s: dropped", conn, self.idle_timeout_s)
                return False
            except OSError:  # connection reset
                return False
            if not data:
                return True  # Asterisk closing the socket also means hangup
            arrival = time.perf_counter()
            conn.count(len(data))
            if await conn.feed(session.receive_data(data), arrival) is not None:
                return True

    async def stop(self) -> None:
        """Stop listening, then end every connection (and so every stream) it holds."""
        if self._server is not None:
            self._server.close()
        await super().stop()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT_S)

    def status(self) -> dict[str, Any]:
        serving = self._server is not None and self._server.is_serving()
        base = super().status()
        return {**base, "up": base["up"] and serving, "host": self.host, "port": self.port}
