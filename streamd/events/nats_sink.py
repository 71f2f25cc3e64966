"""Events into a NATS JetStream stream, with the SQLite event store as the transactional outbox.

Every event is committed to the store first (the bus does that); this sink only reads rows the
store marked ``sent = 0``, publishes them in id order with ``Nats-Msg-Id = <node>-<id>`` and marks
them sent once JetStream acknowledged them. So:

- a cluster that is down or electing a leader never stops scoring: rows wait in the store and go
  out in order when it answers again, also after a ``kill -9`` of the daemon;
- a publish whose ack was lost (timeout, crash between ack and mark) is sent again with the same
  id and JetStream drops the copy (``duplicate_window_s``), so each event lands once;
- with ``max_in_flight: 1`` (the default) a failed publish is retried before any later one is
  sent, so the stream holds each node's events in id order. Larger windows publish faster; a
  failure inside a window can then put a retried event after later ones (counted as ``reordered``;
  each still lands once and consumers can order by ``id``).

nats-py is imported only when the sink is enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamd.errors import ConfigError

if TYPE_CHECKING:
    from streamd.config.sections import NatsSinkConfig
    from streamd.events.store import EventStore

log = logging.getLogger("streamd.nats")

READ_BATCH = 512
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 2.0
IDLE_RECHECK_S = 1.0
_TOKEN_BAD = re.compile(r"[^A-Za-z0-9_-]")

AckObserver = Callable[[float], None]


def node_name(configured: str | None) -> str:
    """The node id in events and message ids: the configured one, else the host name."""
    if configured:
        return configured
    return _TOKEN_BAD.sub("_", socket.gethostname())[:64] or "node"


def subject_token(text: str) -> str:
    """One subject token from a call id: ``.``, ``*``, ``>`` and spaces would split or match."""
    return _TOKEN_BAD.sub("_", text)[:128] or "_"


def subject_for(prefix: str, event_type: str, call_id: str | None, node: str) -> str:
    """``<prefix>.<type>.<call id>``; events without a call (daemon.status) use the node id."""
    return f"{prefix}.{event_type}.{subject_token(call_id) if call_id else node}"


def message_id(node: str, event_id: int) -> str:
    return f"{node}-{event_id}"


def connect_options(cfg: NatsSinkConfig) -> dict[str, Any]:
    """nats-py ``connect`` keywords: reconnect forever, credentials and TLS from the config."""
    opts: dict[str, Any] = {
        "servers": list(cfg.servers),
        "name": "streamd",
        "connect_timeout": 2,
        "reconnect_time_wait": 1,
        "max_reconnect_attempts": -1,
        "allow_reconnect": True,
    }
    if cfg.credentials:
        opts["user_credentials"] = cfg.credentials
    if cfg.user:
        opts["user"], opts["password"] = cfg.user, cfg.password or ""
    if cfg.token:
        opts["token"] = cfg.token
    if cfg.tls_ca or cfg.tls_cert:
        try:
            ctx = ssl.create_default_context(cafile=cfg.tls_ca)
            if cfg.tls_cert:
                ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"sinks.nats: cannot load TLS files ({exc})") from None
        opts["tls"] = ctx
    return opts


class NatsOutbox:
    """Publishes the store's unsent rows to JetStream, in order, and marks them sent."""

    def __init__(
        self,
        cfg: NatsSinkConfig,
        store: EventStore,
        node: str,
        on_ack: AckObserver | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.node = node
        self.on_ack = on_ack
        self.state = "starting"
        self.last_error = ""
        self.backlog = 0
        self.published = 0
        self.duplicates = 0
        self.errors = 0
        self.reordered = 0
        self.last_ack_s: float | None = None  # publish -> ack of the latest message
        self._nc: Any = None
        self._js: Any = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._acked_upto: int | None = None  # acked in this read batch, not yet marked sent

    # -- bus side -------------------------------------------------------------------------

    def notify(self, event: dict[str, Any]) -> None:
        """Bus sink: the event is already in the store; wake the publisher."""
        self.backlog += 1
        self._wake.set()

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "stream": self.cfg.stream,
            "node": self.node,
            "backlog": self.backlog,
            "published": self.published,
            "duplicates": self.duplicates,
            "errors": self.errors,
            "reordered": self.reordered,
            "last_ack_ms": None if self.last_ack_s is None else round(self.last_ack_s * 1e3, 2),
            "last_error": self.last_error,
        }

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            import nats  # noqa: F401
        except ImportError:
            raise ConfigError(
                "sinks.nats is enabled but nats-py is not installed: pip install 'streamd[nats]'"
            ) from None
        self.backlog = await asyncio.to_thread(self.store.unsent_count)
        self._task = asyncio.create_task(self._run(), name="nats-outbox")

    async def stop(self, flush_s: float | None = None) -> None:
        """Publish what is left for up to ``flush_s``; the rest stays in the outbox."""
        if self._task is None:
            return
        flush = self.cfg.flush_s if flush_s is None else flush_s
        deadline = time.monotonic() + flush
        while self.backlog > 0 and self.state == "connected" and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.05)
        self._stopping = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 2.0)
        if self.backlog:
            log.info("nats: %d events left in the outbox for the next start", self.backlog)
        self.state = "stopped"

    # -- the publisher --------------------------------------------------------------------

    def _failed(self, state: str, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        if state != self.state or text != self.last_error:
            log.warning("nats: %s (%s); %d events wait in the outbox", state, text, self.backlog)
        self.state, self.last_error = state, text
        self.errors += 1

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._stopping:
            try:
                if self._nc is None:
                    await self._connect()
                await self._ensure_stream()
                await self._pump()
                backoff = BACKOFF_MIN_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed("unavailable" if self._nc is not None else "disconnected", exc)
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)

    async def _connect(self) -> None:
        import nats

        async def on_disconnect() -> None:
            if not self._stopping:
                self.state = "disconnected"
                log.warning("nats: disconnected; %d events wait in the outbox", self.backlog)

        async def on_reconnect() -> None:
            log.info("nats: reconnected to %s", self._nc.connected_url.netloc)
            self._wake.set()

        async def on_error(exc: Exception) -> None:
            log.debug("nats: %s", exc)

        self.state = "connecting"
        self._nc = await nats.connect(
            **connect_options(self.cfg),
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
        )
        self._js = self._nc.jetstream(timeout=self.cfg.ack_timeout_s)
        log.info("nats: connected to %s as node %s", self._nc.connected_url.netloc, self.node)

    async def _ensure_stream(self) -> None:
        """Create the stream when missing; an existing one is used as it is (someone owns it)."""
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        cfg = self.cfg
        try:
            await self._js.stream_info(cfg.stream)
            return
        except NotFoundError:
            pass
        await self._js.add_stream(
            StreamConfig(
                name=cfg.stream,
                subjects=[f"{cfg.subject_prefix}.>"],
                num_replicas=cfg.replicas,
                max_age=cfg.max_age_days * 86400.0,
                duplicate_window=cfg.duplicate_window_s,
                storage=StorageType.FILE,
            )
        )
        log.info(
            "nats: created stream %s (R%d) on %s.>", cfg.stream, cfg.replicas, cfg.subject_prefix
        )

    async def _pump(self) -> None:
        """Publish unsent rows until the outbox is empty, then wait for the bus to wake us."""
        while not self._stopping:
            rows = await asyncio.to_thread(self.store.read_unsent, 0, READ_BATCH)
            if not rows:
                self.backlog = 0
                self.state = "connected"
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_RECHECK_S)
                continue
            # Rows are marked sent once per read batch (and before a failure propagates): a
            # crash in between only re-sends acked rows, which JetStream drops by Nats-Msg-Id.
            self._acked_upto = None
            try:
                step = self.cfg.max_in_flight
                for start in range(0, len(rows), step):
                    await self._publish_window(rows[start : start + step])
            finally:
                if self._acked_upto is not None:
                    await asyncio.to_thread(self.store.mark_sent, self._acked_upto, rows[0][0])
            self.backlog = await asyncio.to_thread(self.store.unsent_count)

    async def _publish_window(self, rows: list[tuple[int, str, str | None, str]]) -> None:
        """Publish rows concurrently; note the acked prefix; raise on the first failure."""
        from nats.js.api import Header

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        futures = []
        for event_id, event_type, call_id, body in rows:
            subject = subject_for(self.cfg.subject_prefix, event_type, call_id, self.node)
            futures.append(
                await self._js.publish_async(
                    subject,
                    body.encode(),
                    headers={Header.MSG_ID.value: message_id(self.node, event_id)},
                )
            )
        results = await asyncio.gather(
            *(asyncio.wait_for(f, self.cfg.ack_timeout_s) for f in futures),
            return_exceptions=True,
        )
        acked = 0
        for result in results:
            if isinstance(result, BaseException):
                break
            acked += 1
            self.duplicates += bool(result.duplicate)
        if acked:
            self._acked_upto = rows[acked - 1][0]
            self.published += acked
            self.backlog = max(0, self.backlog - acked)
            self.last_ack_s = loop.time() - t0
            if self.on_ack is not None:
                for _ in range(acked):
                    self.on_ack(self.last_ack_s)
        if acked < len(rows):
            later = sum(not isinstance(r, BaseException) for r in results[acked + 1 :])
            self.reordered += later  # these went in; their retry is dropped as a duplicate
            failure = results[acked]
            assert isinstance(failure, BaseException)
            raise failure
        if self.state != "connected":
            log.info("nats: publishing again (%d events wait)", self.backlog)
        self.state, self.last_error = "connected", ""
