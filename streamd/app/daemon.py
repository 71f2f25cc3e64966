"""The daemon's lifecycle: load the model, start scorer, bus, server and sources; stop cleanly.

Shutdown order matters: stop taking streams, let sources end theirs, score what is buffered,
emit ``stream.ended`` for every open stream, then flush the store (docs/design.md "Lifecycle").
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from typing import TYPE_CHECKING, Any

from streamd.config import Config
from streamd.errors import StreamdError
from streamd.events.bus import EventBus, JsonLinesSink
from streamd.events.nats_sink import NatsOutbox, node_name
from streamd.events.store import EventStore, open_store
from streamd.http.view import HttpView, ModelFacts
from streamd.ingest.base import Source
from streamd.ingest.files import FileSource
from streamd.model.manifest import resolve_manifest
from streamd.model.session import Detector, RuntimeOptions
from streamd.pipeline.hub import StreamHub
from streamd.pipeline.scorer import Scorer

if TYPE_CHECKING:
    from streamd.http.app import ServerHandle

log = logging.getLogger("streamd.app.daemon")

CHECKPOINT_EVERY_S = 10.0  # WAL checkpoints, from a worker thread (keeps fsync off the loop)
PRUNE_EVERY_S = 3600.0
PRUNE_ROUNDS = 50  # chunks of 2,000 rows per maintenance round

# config section under ``sources`` -> "module:Class"; each class has ``from_config(config)``.
SOURCE_CLASSES = {
    "sip": "streamd.ingest.sip.server:SipSource",
    "webrtc": "streamd.ingest.webrtc.source:WebRtcSource",
    "mic": "streamd.ingest.mic:MicSource",
    "twilio": "streamd.ingest.feeds.twilio:TwilioSource",
    "audiohook": "streamd.ingest.feeds.audiohook:AudioHookSource",
    "audiofork": "streamd.ingest.feeds.audiofork:AudioForkSource",
    "audiosocket": "streamd.ingest.feeds.audiosocket:AudioSocketSource",
}
HTTP_SOURCES = {"webrtc", "twilio", "audiohook", "audiofork"}


def load_detector(config: Config, model: str | None = None) -> Detector:
    m = config.model
    path = resolve_manifest(m.dir, model or m.name)
    if m.backend == "triton":
        from streamd.model.remote import RemoteDetector

        return RemoteDetector.from_config(path, m.triton)
    return Detector.load(
        path,
        m.providers,
        m.require_gpu,
        m.threads,
        spin=m.spin,
        runtime=RuntimeOptions.from_config(m),
    )


def build_scorer(config: Config, detector: Detector) -> Scorer:
    m = config.model
    if m.backend == "triton":
        from streamd.model.remote import RemoteDetector
        from streamd.pipeline.remote_scorer import RemoteScorer

        assert isinstance(detector, RemoteDetector)
        return RemoteScorer(
            detector, m.batch_max, m.batch_wait_ms, m.triton.max_queue, workers=m.workers
        )
    return Scorer(detector, m.batch_max, m.batch_wait_ms, workers=m.workers)


def build_sources(config: Config) -> list[Source]:
    sources: list[Source] = []
    if config.sources.files:
        sources.append(FileSource(config.sources.files, config.sources.as_fast_as_possible))
    for key, target in SOURCE_CLASSES.items():
        section = getattr(config.sources, key)
        if not section.enabled:
            continue
        if key in HTTP_SOURCES and not config.server.enabled:
            log.warning("sources.%s needs the HTTP server (server.enabled is false): skipped", key)
            continue
        module_name, cls_name = target.split(":")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except ImportError as exc:
            if key == "webrtc" and section is config.sources.webrtc and "aiortc" in str(exc):
                log.warning(
                    "sources.webrtc: aiortc is not installed "
                    "(pip install 'streamd[webrtc]'): skipped"
                )
                continue
            raise StreamdError(f"sources.{key}: cannot load its adapter ({exc})") from None
        sources.append(cls.from_config(config))
    return sources


class Daemon:
    def __init__(
        self, config: Config, model: str | None = None, stdout_events: bool = False
    ) -> None:
        self.config = config
        self.model_name = model
        self.stdout_events = stdout_events
        self.detector: Detector | None = None
        self.bus: EventBus | None = None
        self.scorer: Scorer | None = None
        self.hub: StreamHub | None = None
        self.sources: list[Source] = []
        self.store: EventStore | None = None
        self.outbox: NatsOutbox | None = None
        self.server: ServerHandle | None = None
        self.ready = False
        self.ready_event = asyncio.Event()  # set once the model is loaded and sources listen
        self._stop = asyncio.Event()
        self._stopped = False
        self._maintenance: asyncio.Task[None] | None = None
        self.stop_reason = ""

    async def start(self) -> None:
        cfg = self.config
        self.detector = await asyncio.to_thread(load_detector, cfg, self.model_name)
        self.store = await asyncio.to_thread(open_store, cfg)
        nats_cfg = cfg.sinks.nats
        self.bus = EventBus(
            self.store, node=node_name(nats_cfg.node_id) if nats_cfg.enabled else None
        )
        if nats_cfg.enabled and self.bus.node is not None:
            self.outbox = NatsOutbox(nats_cfg, self.store, self.bus.node)
            await self.outbox.start()
            self.bus.add_sink(self.outbox.notify)
        if self.stdout_events:
            self.bus.add_sink(JsonLinesSink())
        if self.store is not None:
            await self._end_recovered(self.store, self.bus)
        self.scorer = build_scorer(cfg, self.detector)
        await self.scorer.start()
        self.hub = StreamHub(cfg, self.detector, self.scorer, self.bus)
        self.sources = build_sources(cfg)
        if cfg.server.enabled:
            from streamd.http.app import start_server

            self.server = await start_server(self.http_view())
        for source in self.sources:
            await source.start(self.hub)
        if self.store is not None:
            self._maintenance = asyncio.create_task(self._maintain(), name="store-maintenance")
        self.ready = True
        self.bus.publish("daemon.status", None, state="ready", **self.describe())
        log.info(
            "ready: model=%s provider=%s sources=%s",
            self.detector.name,
            self.detector.provider,
            [s.name for s in self.sources],
        )
        self.ready_event.set()

    def http_view(self) -> HttpView:
        """What the HTTP server may read: the parts it needs, never the daemon itself."""
        det, bus, hub, scorer = self.detector, self.bus, self.hub, self.scorer
        if det is None or bus is None or hub is None or scorer is None:
            raise RuntimeError("the HTTP view needs the model, bus, hub and scorer started")
        return HttpView(
            server=self.config.server,
            state=self,
            bus=bus,
            store=self.store,
            hub=hub,
            scorer=scorer,
            model=ModelFacts(det.name, det.manifest.sha256 or "", det.provider),
            sources=self.sources,
            outbox=self.outbox,
            model_unavailable=getattr(det, "unavailable", None),  # the Triton tier's, if remote
        )

    def describe(self) -> dict[str, Any]:
        det = self.detector
        return {
            "model": det.describe() if det else None,
            "provider": det.provider if det else None,
            "sources": [s.status() for s in self.sources],
            "streams": len(self.hub.streams) if self.hub else 0,
            "listen": {"url": self.server.url, "port": self.server.port} if self.server else None,
        }

    def request_stop(self, reason: str = "stop requested") -> None:
        self.stop_reason = reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        """Run until asked to stop (or, with ``sources.exit_when_done``, until files end)."""
        try:
            try:
                await self.start()
            except Exception as exc:  # say why first: what stop() logs next is the clean-up
                log.error("start failed: %s", exc)
                self.stop_reason = "start failed"
                raise
            waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._stop.wait())]
            files = [s for s in self.sources if isinstance(s, FileSource)]
            if self.config.sources.exit_when_done and files:
                waiters.append(asyncio.ensure_future(asyncio.gather(*(f.wait() for f in files))))
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Also cleans up after a start that failed half-way (port in use, a source that failed)."""
        if self._stopped:
            return
        self._stopped = True
        log.info("stopping: %s", self.stop_reason or "sources done")
        if self.hub is not None:
            self.hub.accepting = False
        try:
            await asyncio.wait_for(self._drain(), timeout=self.config.service.grace_s or None)
        except asyncio.TimeoutError:
            log.warning(
                "grace period (%.1f s) over: ending streams without scoring the rest",
                self.config.service.grace_s,
            )
            if self.hub is not None:
                await self._end_unscored(self.hub)
        if self.bus is not None and self.ready:
            self.bus.publish(
                "daemon.status", None, state="stopped", reason=self.stop_reason or "done"
            )
        self.ready = False
        if self.bus is not None:
            await self.bus.drain()  # clients get every event live before the server closes
        if self.server is not None:
            await self.server.stop()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        if self.outbox is not None:
            await self.outbox.stop()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            log.info("event store closed at id %d", self.bus.last_id if self.bus else 0)
        self.hub = None

    @staticmethod
    async def _end_recovered(store: EventStore, bus: EventBus) -> None:
        """Streams the last run left open (it was killed mid-call) end now, as ``recovered``,
        so consumers that track calls by ``stream.ended`` do not wait for them forever."""
        for stream in await asyncio.to_thread(store.open_streams):
            bus.publish("stream.ended", stream, summary={"reason": "recovered"})
            log.warning("stream %s was left open by the last run: ended as recovered", stream)

    async def _end_unscored(self, hub: StreamHub) -> None:
        """Past the grace period: drop what is not scored, but still end every stream with its
        summary so far, since consumers track calls by ``stream.ended``."""
        for s in list(hub.streams.values()):
            await s.abort("shutdown: grace period over, the rest not scored")

    async def _maintain(self) -> None:
        """Checkpoint the WAL often and prune past ``store.retention_days`` (hourly, or sooner
        when the retention is shorter), deleting in chunks so appends never wait long."""
        store = self.store
        assert store is not None
        retention = self.config.store.retention_days
        prune_every = min(PRUNE_EVERY_S, max(1.0, retention * 86400.0 / 4))
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while True:
            try:
                if loop.time() >= next_prune:
                    for _ in range(PRUNE_ROUNDS):  # bounded: the rest waits for the next round
                        if await asyncio.to_thread(store.prune, retention, None, 2000) < 2000:
                            break
                        await asyncio.sleep(0.01)
                    next_prune = loop.time() + prune_every
                await asyncio.to_thread(store.checkpoint)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # maintenance must never take the daemon down
                log.warning("store maintenance failed: %s", exc)
            await asyncio.sleep(min(CHECKPOINT_EVERY_S, max(0.0, next_prune - loop.time())))

    async def _drain(self) -> None:
        for source in self.sources:
            try:
                await source.stop()
            except Exception:
                log.exception("source %s did not stop cleanly", source.name)
        if self.hub is not None:
            await self.hub.close_all("shutdown")
        if self.scorer is not None:
            await self.scorer.close()
