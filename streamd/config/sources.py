"""``sources``: the config of every way audio comes in (files, SIP, WebRTC, mic, feeds)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from streamd.config.sections import Section


class SipConfig(Section):
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


class WebRtcConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    ice_servers: list[str] = []
    max_peers: int = Field(20, ge=1)
    max_peers_per_address: int = Field(
        4, ge=1, description="concurrent peers (and offers being answered) from one address"
    )


class MicConfig(Section):
    enabled: bool = False
    device: str | int | None = None
    sample_rate: int | None = None


class _FeedSection(Section):
    """Limits every contact-center feed shares, so one misbehaving peer stays bounded."""

    enabled: bool = False
    max_connections: int = Field(100, ge=1, description="open connections; more are refused")
    max_connections_per_source: int = Field(
        20, ge=1, description="open connections from one address, or with one credential"
    )
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


class SourcesConfig(Section):
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
