"""The YAML config, validated with pydantic so every error names the key and the reason.

Every key has a default, so an empty file runs. ``STREAMD_SECTION__KEY=value`` environment
variables override keys (values are parsed as YAML, so ``STREAMD_MODEL__BATCH_MAX=8`` is an int);
pydantic-settings maps the names to keys, and an error in an override names the variable.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from streamd.errors import ConfigError

ENV_PREFIX = "STREAMD_"
ENV_DELIMITER = "__"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
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


class SipConfig(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(5060, ge=0, le=65535)
    tcp: bool = True
    rtp_ports: tuple[int, int] = (40000, 40999)
    allow_from: list[str] = ["127.0.0.1/32"]
    max_calls: int = Field(200, ge=1)
    max_message_bytes: int = Field(65535, ge=512)
    max_packet_bytes: int = Field(2048, ge=64)
    rtp_timeout_s: float = Field(10.0, gt=0)
    jitter_ms: int = Field(60, ge=0, le=1000)
    advertise_address: str | None = Field(
        None,
        description=(
            "address put in SDP answers and Contact; null: host, "
            "or the route to the peer when host is 0.0.0.0"
        ),
    )
    codecs: list[str] = Field(
        ["PCMU", "PCMA", "L16", "G722", "opus/48000/2"],
        min_length=1,
        description=(
            "encodings the SDP answer may pick, NAME[/rate[/channels]]; the offer's order decides"
        ),
    )
    answer_delay_ms: int = Field(
        0, ge=0, le=60000, description="send 180 Ringing and wait this long before 200 OK"
    )
    max_gap_s: float = Field(
        60.0, ge=0, le=3600, description="longest loss or hold written as silence"
    )
    tcp_max_connections: int = Field(
        100, ge=1, description="open SIP-over-TCP connections; more are refused"
    )
    tcp_max_per_source: int = Field(
        16, ge=1, description="open SIP TCP/TLS connections from one address; more are refused"
    )
    tcp_idle_s: float = Field(
        300.0, gt=0, description="a SIP TCP/TLS connection with no message this long is closed"
    )
    max_calls_per_source: int = Field(
        50, ge=1, description="calls open from one source address; more get 486"
    )
    max_media_per_call: int = Field(
        8, ge=1, le=64, description="m-lines an offer may have (each takes a port); more: 488"
    )
    hold_timeout_s: float = Field(
        3600.0, gt=0, description="a stream on hold (inactive, no RTP expected) this long ends"
    )
    tls_port: int | None = Field(
        None, ge=0, le=65535, description="SIP over TLS (sips:) on this port; null: off"
    )
    tls_cert: str | None = Field(None, description="PEM certificate (chain) for SIP over TLS")
    tls_key: str | None = Field(None, description="PEM private key for SIP over TLS")
    srtp: Literal["optional", "required", "off"] = Field(
        "optional",
        description=(
            "SRTP (SDES a=crypto): optional takes RTP/SAVP and RTP/AVP; required: only SAVP"
        ),
    )
    auth_users: dict[str, str] = Field(
        {}, description="digest auth user -> password on new INVITEs; empty: allow_from only"
    )
    auth_realm: str = Field("streamd", min_length=1, description="digest auth realm")
    auth_algorithms: list[Literal["SHA-256", "MD5"]] = Field(
        ["SHA-256", "MD5"], min_length=1, description="digest algorithms challenged, in order"
    )
    auth_nonce_s: float = Field(
        300.0, gt=0, description="a digest nonce older than this is stale (challenged again)"
    )

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"{net!r} is not a network ({exc})") from None
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(
                f"{v!r} must be an IP address (it also goes into SDP answers)"
            ) from None
        return v

    @field_validator("advertise_address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                if ipaddress.ip_address(v).is_unspecified:
                    raise ValueError("must be an address peers can send to, not 0.0.0.0 or ::")
            except ValueError as exc:
                raise ValueError(f"{v!r} is not a usable IP address ({exc})") from None
        return v

    @model_validator(mode="after")
    def _tls(self) -> SipConfig:
        if self.tls_port is not None and not (self.tls_cert and self.tls_key):
            raise ValueError("tls_port needs tls_cert and tls_key (PEM files)")
        return self

    @field_validator("codecs")
    @classmethod
    def _codecs(cls, v: list[str]) -> list[str]:
        known = {"pcmu", "pcma", "l16", "g722", "opus"}
        for item in v:
            parts = item.split("/")
            if (
                parts[0].lower() not in known
                or len(parts) > 3
                or not all(p.isdigit() for p in parts[1:])
            ):
                raise ValueError(
                    f"{item!r} is not NAME[/rate[/channels]] with "
                    "NAME one of PCMU, PCMA, L16, G722, opus"
                )
        return v

    @field_validator("rtp_ports")
    @classmethod
    def _ports(cls, v: tuple[int, int]) -> tuple[int, int]:
        lo, hi = v
        if not (1024 <= lo <= hi <= 65535):
            raise ValueError("must be [low, high] with 1024 <= low <= high <= 65535")
        if lo == hi and lo % 2:
            raise ValueError("must hold an even port (RTP uses even ports, RFC 3550 §11)")
        return v


class WebRtcConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    ice_servers: list[str] = []
    max_peers: int = Field(20, ge=1)
    max_peers_per_address: int = Field(
        4, ge=1, description="concurrent peers (and offers being answered) from one address"
    )


class MicConfig(_Section):
    enabled: bool = False
    device: str | int | None = None
    sample_rate: int | None = None


class _FeedSection(_Section):
    """Limits every contact-center feed shares, so one misbehaving peer stays bounded."""

    enabled: bool = False
    max_connections: int = Field(100, ge=1, description="open connections; more are refused")
    max_message_bytes: int = Field(
        64 * 1024, ge=1024, le=16 * 1024 * 1024, description="largest message or frame accepted"
    )
    max_gap_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="longest loss or pause written as silence; the rest is skipped",
    )


class TwilioConfig(_FeedSection):
    path: str = "/v1/ingest/twilio"
    auth_token: str | None = None
    public_url: str | None = Field(None, description="URL Twilio signs, when behind a proxy")
    reorder_window: int = Field(
        5, ge=0, le=100, description="frames held to put chunks back in order"
    )


class AudioHookConfig(_FeedSection):
    path: str = "/v1/ingest/audiohook"
    api_keys: list[str] = []
    organization_ids: list[str] = []
    client_secrets: dict[str, str] = Field(
        {},
        description="API key -> the integration's client secret (base64, as Genesys shows "
        "it): requests with that key must carry a valid HTTP message signature",
    )

    @field_validator("client_secrets")
    @classmethod
    def _base64(cls, value: dict[str, str]) -> dict[str, str]:
        for key, secret in value.items():
            try:
                base64.b64decode(secret, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"the secret of key {key[:6]}... is not base64") from None
        return value


class AudioForkConfig(_FeedSection):
    path: str = "/v1/ingest/audiofork"
    sample_rate: Literal[8000, 16000] = Field(8000, description="when the metadata does not say")
    mix: Literal["mono", "mixed", "stereo"] = Field(
        "mono", description="when the metadata does not say"
    )


class AudioSocketConfig(_FeedSection):
    host: str = "127.0.0.1"
    port: int = Field(9092, ge=0, le=65535)
    leg: str = Field("caller", min_length=1, max_length=64, description="leg of the one stream")
    idle_timeout_s: float = Field(
        30.0, ge=0, description="a connection silent this long is dropped; 0 waits forever"
    )


class SourcesConfig(_Section):
    files: list[str] = []
    as_fast_as_possible: bool = False
    exit_when_done: bool = Field(False, description="exit once every file source has ended")
    sip: SipConfig = SipConfig()
    webrtc: WebRtcConfig = WebRtcConfig()
    mic: MicConfig = MicConfig()
    twilio: TwilioConfig = TwilioConfig()
    audiohook: AudioHookConfig = AudioHookConfig()
    audiofork: AudioForkConfig = AudioForkConfig()
    audiosocket: AudioSocketConfig = AudioSocketConfig()
    max_streams: int = Field(500, ge=1)
    max_lead_s: float = Field(
        10.0,
        gt=0,
        description="seconds of audio a live stream may run ahead of the wall clock before "
        "it is cut (stream.ended reason faster_than_real_time); files played "
        "as_fast_as_possible are exempt",
    )


class VadConfig(_Section):
    aggressiveness: int = Field(2, ge=0, le=3)
    frame_ms: Literal[10, 20, 30] = 20
    hangover_ms: int = Field(200, ge=0, le=2000, description="non-speech kept after speech")
    pause_s: float = Field(0.8, gt=0, description="silence that counts as speech having stopped")
    tone_gate: bool = Field(True, description="skip windows of tones, DTMF, fax and hold music")


class AdaptiveConfig(_Section):
    """Adaptive scoring: confidently-real streams are scored with a longer hop
    (docs/capacity.md)."""

    enabled: bool = False
    calm_below: float = Field(0.2, gt=0, lt=1, description="p_fake under this is a calm window")
    calm_windows: int = Field(3, ge=1, description="calm windows in a row before the hop grows")
    long_hop_s: float = Field(3.0, gt=0, description="hop of a calm stream; at most length_s")


class WindowsConfig(_Section):
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


class TritonConfig(_Section):
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


class ModelConfig(_Section):
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


class AlertsConfig(_Section):
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


class StoreConfig(_Section):
    path: str | None = None
    retention_days: float = Field(30, gt=0)


class NatsSinkConfig(_Section):
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


class SinksConfig(_Section):
    nats: NatsSinkConfig = NatsSinkConfig()


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    file: str | None = None


class ServiceConfig(_Section):
    grace_s: float = Field(10.0, ge=0, description="SIGTERM: time to score buffered audio")


class Config(BaseSettings):
    """The whole config; ``Config()`` is the defaults, `parse_config` adds the environment."""

    model_config = SettingsConfigDict(
        extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER
    )

    server: ServerConfig = ServerConfig()
    sources: SourcesConfig = SourcesConfig()
    vad: VadConfig = VadConfig()
    windows: WindowsConfig = WindowsConfig()
    model: ModelConfig = ModelConfig()
    alerts: AlertsConfig = AlertsConfig()
    store: StoreConfig = StoreConfig()
    sinks: SinksConfig = SinksConfig()
    logging: LoggingConfig = LoggingConfig()
    service: ServiceConfig = ServiceConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the keys given: `parse_config` layers the environment so it can name a bad
        variable."""
        return (init_settings,)


class _EnvOverrides(EnvSettingsSource):
    """``STREAMD_SECTION__KEY`` variables as nested keys, each value parsed as YAML."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(Config, case_sensitive=False, env_parse_none_str="")
        # YAML reads an empty value as null; so does pydantic-settings with this none string.
        self.env_vars = parse_env_vars(environ, case_sensitive=False, parse_none_str="")

    def field_is_complex(self, field: FieldInfo) -> bool:
        return True  # every value goes through decode_complex_value, so "20" is 20 as in the file

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value  # a plain string such as "a: b: c" is still a string


def _unknown_sections(environ: Mapping[str, str]) -> list[str]:
    """``STREAMD_SEVER__PORT`` would be ignored silently; other ``STREAMD_X`` names are not keys."""
    errors = []
    for key in sorted(environ):
        name = key.upper().removeprefix(ENV_PREFIX)
        section = name.split(ENV_DELIMITER)[0].lower()
        if name != key.upper() and ENV_DELIMITER in name and section not in Config.model_fields:
            errors.append(f"{key} (environment): unknown section {section!r}")
    return errors


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _blame(loc: tuple[int | str, ...], env: dict[str, Any], origin: str) -> str:
    """Who set the value at ``loc``: a variable, the file, or the file with variables under it."""
    node: Any = env
    path: list[str] = []
    for part in loc:
        if not isinstance(node, dict) or str(part) not in node:
            break
        node = node[str(part)]
        path.append(str(part))
    if path and not isinstance(node, dict):
        return ENV_PREFIX + ENV_DELIMITER.join(path).upper() + " (environment)"
    if path:
        names = ", ".join(_names(node, path))
        return f"{origin} with {names} (environment)"
    return origin


def _names(node: dict[str, Any], path: list[str]) -> list[str]:
    out = []
    for key, value in node.items():
        if isinstance(value, dict):
            out.extend(_names(value, [*path, key]))
        else:
            out.append(ENV_PREFIX + ENV_DELIMITER.join([*path, key]).upper())
    return out


def _format_error(exc: ValidationError, origin: str, env: dict[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{_blame(err['loc'], env, origin)}: {key}: {msg}")
    return "\n".join(lines)


def parse_config(
    data: Any, origin: str = "config", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate ``data`` (from ``origin``) with the environment's overrides on top."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of sections")
    env_vars = os.environ if environ is None else environ
    unknown = _unknown_sections(env_vars)
    if unknown:
        raise ConfigError("\n".join(unknown))
    env = _EnvOverrides(env_vars)()
    try:
        return Config.model_validate(_merge(data, env))
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, origin, env)) from None


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate a config file; ``None`` means defaults plus environment overrides."""
    if path is None:
        return parse_config({}, "defaults", environ)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})".replace("\n", " ")) from None
    return parse_config(data, str(p), environ)
