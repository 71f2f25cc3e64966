"""The config sections other than ``sources``: each is a pydantic model whose errors
name the key."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """A config section: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class ServerConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    tokens: list[str] = []
    client_queue: int = Field(
        1000, ge=1, description="events buffered per websocket client before 1013"
    )
    max_connections: int = Field(
        512, ge=1, description="open HTTP/websocket connections; more are closed at once"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="a connection must send a complete request head within this"
    )
    allowed_origins: list[str] = Field(
        [], description="web origins (https://host:port) whose pages may open /v1/events"
    )


class VadConfig(Section):
    aggressiveness: int = Field(2, ge=0, le=3)
    frame_ms: Literal[10, 20, 30] = 20
    hangover_ms: int = Field(200, ge=0, le=2000, description="non-speech kept after speech")
    pause_s: float = Field(0.8, gt=0, description="silence that counts as speech having stopped")
    tone_gate: bool = Field(True, description="skip windows of tones, DTMF, fax and hold music")


class AdaptiveConfig(Section):
    """Adaptive scoring: confidently-real streams are scored with a longer hop
    (docs/capacity.md)."""

    enabled: bool = False
    calm_below: float = Field(0.2, gt=0, lt=1, description="p_fake under this is a calm window")
    calm_windows: int = Field(3, ge=1, description="calm windows in a row before the hop grows")
    long_hop_s: float = Field(3.0, gt=0, description="hop of a calm stream; at most length_s")


class WindowsConfig(Section):
    length_s: float = Field(4.0, gt=0)
    min_s: float = Field(2.5, gt=0)
    hop_s: float = Field(1.0, gt=0)
    adaptive: AdaptiveConfig = AdaptiveConfig()

    @model_validator(mode="after")
    def _order(self) -> WindowsConfig:
        if self.min_s > self.length_s:
            raise ValueError(f"min_s ({self.min_s}) must not exceed length_s ({self.length_s})")
        if self.adaptive.long_hop_s > self.length_s:
            raise ValueError(
                f"adaptive.long_hop_s ({self.adaptive.long_hop_s}) must not exceed length_s "
                f"({self.length_s}): speech between windows would never be scored"
            )
        return self


class TritonConfig(Section):
    """Remote scoring on Triton servers (KServe v2 over gRPC); see docs/scale-out.md."""

    servers: list[str] = Field(
        ["127.0.0.1:8001"],
        min_length=1,
        description="host:port gRPC endpoints; requests go round-robin over the healthy ones",
    )
    model_name: str | None = Field(None, description="the model's name on Triton; null: model.name")
    timeout_s: float = Field(5.0, gt=0, le=600, description="one inference request")
    retry_s: float = Field(2.0, gt=0, le=600, description="a failed server is skipped this long")
    max_queue: int = Field(
        2000, ge=1, description="windows held while no server answers; more are dropped"
    )


class ModelConfig(Section):
    name: str | None = None
    dir: str = "models"
    providers: list[Literal["cuda", "tensorrt", "cpu"]] = ["cuda", "cpu"]
    require_gpu: bool = False
    batch_max: int = Field(32, ge=1, le=1024)
    batch_wait_ms: float = Field(20, ge=0, le=5000)
    threads: int = Field(0, ge=0, description="intra-op threads; 0 lets onnxruntime choose")
    spin: bool = Field(
        False, description="let idle onnxruntime threads spin (lower latency, more CPU)"
    )
    workers: int = Field(1, ge=1, le=64, description="batches scored at once, one thread each")
    optimize: Literal["disabled", "basic", "extended", "all"] = Field(
        "all", description="onnxruntime graph optimisation level"
    )
    optimized_dir: str | None = Field(
        None, description="keep the optimised graph here and load it on the next start"
    )
    io_binding: bool | None = Field(None, description="null: on for GPU providers, off on CPU")
    batch_buckets: list[int] | None = Field(
        None, description="fixed batch sizes; null: powers of two on GPU, none on CPU; []: none"
    )
    reuse_front_end: bool = Field(
        False, description="aasist: run the front end once per hop, not once per window"
    )
    backend: Literal["onnxruntime", "triton"] = Field(
        "onnxruntime", description="score in-process, or send windows to a Triton tier"
    )
    triton: TritonConfig = TritonConfig()


class AlertsConfig(Section):
    method: Literal["ema", "mean"] = "ema"
    alpha: float = Field(0.5, gt=0, le=1)
    n: int = Field(3, ge=1, description="windows averaged when method is mean")
    raise_: float | None = Field(None, alias="raise", ge=0, le=1)
    clear: float | None = Field(None, ge=0, le=1)
    raise_after: int = Field(2, ge=1)
    clear_after: int = Field(3, ge=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _order(self) -> AlertsConfig:
        if self.raise_ is not None and self.clear is not None and self.clear > self.raise_:
            raise ValueError(f"clear ({self.clear}) must not exceed raise ({self.raise_})")
        return self


class StoreConfig(Section):
    path: str | None = None
    retention_days: float = Field(30, gt=0)


class NatsSinkConfig(Section):
    """Events into a NATS JetStream stream, with the SQLite store as the outbox."""

    enabled: bool = False
    servers: list[str] = Field(["nats://127.0.0.1:4222"], min_length=1)
    stream: str = Field("STREAMD", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    subject_prefix: str = Field(
        "streamd",
        pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
        description="<prefix>.<type>.<call>",
    )
    replicas: int = Field(3, ge=1, le=5, description="used when the stream is created")
    max_age_days: float = Field(30, gt=0, description="used when the stream is created")
    duplicate_window_s: float = Field(
        300, gt=0, description="JetStream drops a repeated Nats-Msg-Id within this window"
    )
    node_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="in every event and Nats-Msg-Id; null: the host name",
    )
    max_in_flight: int = Field(
        1, ge=1, le=1024, description="publishes awaiting an ack; 1 keeps exact order on failures"
    )
    ack_timeout_s: float = Field(2.0, gt=0, le=60)
    flush_s: float = Field(5.0, ge=0, description="on stop: time to publish what is left")
    credentials: str | None = Field(None, description="a .creds file (JWT + NKey)")
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None


class SinksConfig(Section):
    nats: NatsSinkConfig = NatsSinkConfig()


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    file: str | None = None


class ServiceConfig(Section):
    grace_s: float = Field(10.0, ge=0, description="SIGTERM: time to score buffered audio")
