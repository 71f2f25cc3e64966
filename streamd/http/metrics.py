"""``/metrics``: Prometheus text from a registry of this daemon's own (not the global one).

Event-shaped figures (windows, alerts, batch sizes, latencies) are counted as they happen through
the hub's observer hooks, the scorer's ``on_batch`` and a bus sink. State-shaped figures (open
streams, websocket clients, frames lost, queue depth) are read at scrape time by a collector, so
they can never drift from the objects that own them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from streamd.events.schema import EVENT_TYPES
from streamd.http.auth import require_token
from streamd.http.view import HttpView
from streamd.pipeline.hub import HubObserver

if TYPE_CHECKING:
    from streamd.http.events_ws import EventsEndpoint
    from streamd.pipeline.scorer import Score
    from streamd.pipeline.stream import StreamPipeline

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# window p_fake: fine near 0 and 1, where calibrated thresholds sit, so drift shows per source
P_FAKE_BUCKETS = (0.001, 0.01, 0.05, *(i / 10 for i in range(1, 10)), 0.95, 0.99, 0.999, 1.0)


class MetricsObserver(HubObserver):
    def __init__(self, metrics: DaemonMetrics) -> None:
        self.m = metrics

    def stream_opened(self, stream: StreamPipeline) -> None:
        self.m.streams.labels(stream.info.source).inc()

    def stream_closed(self, stream: StreamPipeline) -> None:
        self.m.closed_frames_lost += stream.frames_lost

    def window_scored(self, stream: StreamPipeline, score: Score) -> None:
        self.m.windows.inc()
        self.m.window_latency.observe(score.queued_s)
        self.m.p_fake.labels(stream.info.source).observe(score.p_fake)

    def alert(self, stream: StreamPipeline, kind: str) -> None:
        self.m.alerts.labels(kind).inc()


# Source figures that are levels, not running totals: exported as gauges
SOURCE_GAUGES = frozenset(
    {"peers", "max_peers", "pending", "calls_open", "connections", "max_connections", "files"}
)


class _LiveCollector:
    """Figures read from the daemon's view at scrape time."""

    def __init__(self, metrics: DaemonMetrics) -> None:
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        v, ep = self.m.view, self.m.endpoint
        open_streams = list(v.hub.streams.values())
        yield _gauge("streamd_streams_open", "Streams (call legs) open now", len(open_streams))
        yield _gauge(
            "streamd_ready", "1 when the daemon takes and scores streams", int(v.state.ready)
        )
        yield _gauge(
            "streamd_scorer_queue_windows", "Windows waiting for the scorer", v.scorer.pending
        )
        lost = self.m.closed_frames_lost + sum(s.frames_lost for s in open_streams)
        yield _counter(
            "streamd_frames_lost", "Audio frames lost in transport (became silence)", lost
        )
        yield _gauge(
            "streamd_ws_clients", "Websocket clients on /v1/events", ep.clients if ep else 0
        )
        yield _counter(
            "streamd_ws_clients_dropped",
            "Websocket clients closed with 1013 (queue overflow)",
            ep.fanout.dropped if ep else 0,
        )
        per_source = CounterMetricFamily(
            "streamd_source_counter",
            "Counters each source keeps (junk, refusals, gaps...)",
            labels=["source", "name"],
        )
        source_state = GaugeMetricFamily(
            "streamd_source_gauge",
            "State each source reports (peers, limits, open calls): can go down",
            labels=["source", "name"],
        )
        for source in v.sources:
            for name, value in source.metric_counters().items():
                family = source_state if name in SOURCE_GAUGES else per_source
                family.add_metric([source.name, name], value)
        yield per_source
        yield source_state
        if v.outbox is not None:
            yield from _outbox_metrics(v.outbox.status())
        tier = getattr(v.scorer, "status", None)  # a scorer in front of a Triton tier
        if callable(tier):
            yield from _tier_metrics(tier())
        yield _gauge("streamd_last_event_id", "Id of the last event published", v.bus.last_id)
        yield _counter(
            "streamd_store_errors",
            "Events that could not be written to the store (they still went out live)",
            v.bus.store_errors + (v.store.write_errors if v.store is not None else 0),
        )
        yield _counter(
            "streamd_events_sent_before_stored",
            "Events sent live before the store committed them (the store stalled)",
            v.bus.sent_before_stored,
        )
        cut = CounterMetricFamily(
            "streamd_streams_cut",
            "Streams ended by a limit (faster_than_real_time: sources.max_lead_s)",
            labels=["source", "reason"],
        )
        for (src, why), n in sorted(v.hub.cut.items()):
            cut.add_metric([src, why], n)
        yield cut


def _tier_metrics(status: dict[str, Any]) -> Iterator[Metric]:
    yield _counter(
        "streamd_scorer_dropped",
        "Windows dropped: inference tier down, queue full",
        status["dropped"],
    )
    up = GaugeMetricFamily(
        "streamd_triton_server_up",
        "1 when the Triton server takes requests (0: skipped after a failure)",
        labels=["server"],
    )
    failures = CounterMetricFamily(
        "streamd_triton_failures", "Failed requests per Triton server", labels=["server"]
    )
    for url, server in status["servers"].items():
        up.add_metric([url], int(server["up"]))
        failures.add_metric([url], server["failures"])
    yield up
    yield failures


def _outbox_metrics(status: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge(
        "streamd_nats_connected",
        "1 when the NATS sink publishes (0: connecting, disconnected or no stream leader)",
        int(status["state"] == "connected"),
    )
    yield _gauge(
        "streamd_outbox_backlog", "Events stored but not yet acked by JetStream", status["backlog"]
    )
    for key, doc in (
        ("published", "Events acked by JetStream"),
        ("duplicates", "Publishes JetStream dropped as repeats of a Nats-Msg-Id"),
        ("errors", "Failed NATS connects or publishes (each is retried)"),
    ):
        yield _counter(f"streamd_nats_{key}", doc, status[key])


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class DaemonMetrics:
    def __init__(self, view: HttpView, endpoint: EventsEndpoint | None = None) -> None:
        self.view = view
        self.endpoint = endpoint
        self.closed_frames_lost = 0
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.streams = Counter(
            "streamd_streams", "Streams (call legs) opened", ["source"], registry=r
        )
        self.windows = Counter("streamd_windows_scored", "Speech windows scored", registry=r)
        self.alerts = Counter("streamd_alerts", "Alert transitions", ["kind"], registry=r)
        for kind in ("raised", "cleared"):
            self.alerts.labels(kind)
        self.events = Counter(
            "streamd_events_published", "Events published on the bus", ["type"], registry=r
        )
        for t in EVENT_TYPES:
            self.events.labels(t)
        self.batch_size = Histogram(
            "streamd_batch_size", "Windows per inference call", buckets=BATCH_BUCKETS, registry=r
        )
        self.inference = Histogram(
            "streamd_inference_seconds",
            "Time of one batched session.run",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.window_latency = Histogram(
            "streamd_window_latency_seconds",
            "Window queued to score returned (queue wait + inference)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.p_fake = Histogram(
            "streamd_window_p_fake",
            "Window p_fake per source: the live score "
            "distribution, for drift and `streamd calibrate`",
            ["source"],
            buckets=P_FAKE_BUCKETS,
            registry=r,
        )
        self.model = Info(
            "streamd_model",
            "Model in use and the execution provider onnxruntime really runs",
            registry=r,
        )
        model = view.model
        self.model.info({"name": model.name, "sha256": model.sha256, "provider": model.provider})
        self.nats_publish = Histogram(
            "streamd_nats_publish_seconds",
            "Publish to JetStream ack, per event",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        r.register(_LiveCollector(self))
        self._attach()

    def _attach(self) -> None:
        v = self.view
        v.hub.observers.append(MetricsObserver(self))
        previous = v.scorer.on_batch

        def on_batch(size: int, seconds: float) -> None:
            self.on_batch(size, seconds)
            if previous is not None:
                previous(size, seconds)

        v.scorer.on_batch = on_batch
        v.bus.add_sink(self.on_event)
        if v.outbox is not None:
            v.outbox.on_ack = self.nats_publish.observe

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.labels(event["type"]).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def setup_metrics(app: web.Application, metrics: DaemonMetrics, tokens: list[str]) -> None:
    async def handler(request: web.Request) -> web.Response:
        require_token(request, tokens)
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", handler)
