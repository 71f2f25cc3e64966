"""What the HTTP server may see of the daemon: a narrow view that ``app/daemon.py`` builds.

The handlers never get the ``Daemon``. Each reads only the part it needs: the events endpoint
the bus and the store, ``/readyz`` the daemon's live state, ``/metrics`` counters of the hub,
scorer, bus and sources, the dashboard thresholds and the model, all of them the NATS outbox's
state. The protocols below name those parts, so the daemon passes its real objects and mypy checks
they fit, and ``streamd.http`` does not import ``streamd.app`` or ``streamd.ingest``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aiohttp import web

    from streamd.config.sections import ServerConfig
    from streamd.events.bus import EventBus
    from streamd.events.nats_sink import AckObserver
    from streamd.events.store import EventStore
    from streamd.pipeline.hub import HubObserver
    from streamd.pipeline.scorer import BatchObserver
    from streamd.pipeline.stream import StreamPipeline


class DaemonState(Protocol):
    """The daemon's lifecycle as ``/readyz`` and ``/metrics`` read it at request time."""

    @property
    def ready(self) -> bool: ...

    @property
    def stopping(self) -> bool: ...

    def describe(self) -> dict[str, Any]:
        """Model, provider, sources' status, open streams, listen address."""
        ...


class HubView(Protocol):
    """The stream hub: open streams and alert thresholds to read, observers to add."""

    observers: list[HubObserver]

    @property
    def streams(self) -> Mapping[str, StreamPipeline]: ...

    @property
    def accepting(self) -> bool: ...

    @property
    def thresholds(self) -> tuple[float, float]: ...

    @property
    def model_json(self) -> dict[str, Any]: ...

    @property
    def cut(self) -> Mapping[tuple[str, str], int]:
        """Streams ended by a limit, by (source, reason)."""
        ...


class ScorerView(Protocol):
    """The shared scorer: its queue depth, and a hook for each batch run."""

    on_batch: BatchObserver | None

    @property
    def pending(self) -> int: ...


class OutboxView(Protocol):
    """The NATS outbox, when ``sinks.nats`` is on: its state to show, a hook for each ack."""

    on_ack: AckObserver | None

    def status(self) -> dict[str, Any]: ...


class HttpSource(Protocol):
    """A source as the server sees it: routes to add, status and counters to report."""

    @property
    def name(self) -> str: ...

    def setup_http(self, app: web.Application) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def metric_counters(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class ModelFacts:
    """The loaded model, for ``streamd_model_info`` and the dashboard."""

    name: str
    sha256: str
    provider: str


@dataclass(frozen=True)
class HttpView:
    """Everything ``streamd.http`` reads: built once the model, bus, hub and sources exist."""

    server: ServerConfig
    state: DaemonState
    bus: EventBus
    store: EventStore | None
    hub: HubView
    scorer: ScorerView
    model: ModelFacts
    sources: Sequence[HttpSource]
    outbox: OutboxView | None = None
    model_unavailable: Callable[[], str | None] | None = None
    """Why the model cannot score now (a remote inference tier is down), or None; /readyz."""
