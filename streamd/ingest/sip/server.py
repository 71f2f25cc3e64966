"""``sources.sip``: the SIP listener (UDP and TCP on one port) and the RTP port pool.

This module owns the sockets; :mod:`streamd.ingest.sip.uas` drives the sans-I/O state machine
(:mod:`streamd.protocols.sip.uas`) with the loop's clock, :mod:`streamd.ingest.sip.call` turns
offers into streams and :mod:`streamd.ingest.rtp` receives
the media. Everything listens on ``sources.sip.host`` (127.0.0.1 by default); SIP over TLS
listens on ``tls_port`` too when set. ``allow_from`` is checked on every datagram and at every
TCP/TLS accept before anything is parsed (or a handshake is made); digest auth
(``auth_users``) is an option on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import logging
import socket
import ssl
from collections import Counter
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from streamd.errors import StreamdError
from streamd.ingest.base import Source
from streamd.ingest.ratelog import RateLimitedLog
from streamd.ingest.rtp import RtpCounters, RtpLimits
from streamd.ingest.rtp_ports import RECV_BUFFER_BYTES, PortPool
from streamd.ingest.sip.call import MediaContext
from streamd.ingest.sip.transport import SipTcp, SipUdp
from streamd.ingest.sip.uas import SipUas
from streamd.ingest.srtp import available as srtp_available

if TYPE_CHECKING:
    from streamd.config import Config
    from streamd.config.sources import SipConfig
    from streamd.pipeline.hub import StreamHub

log = logging.getLogger("streamd.ingest.sip.server")

BIND_TRIES = 10
ALLOW_CACHE = 4096


def usable_codecs(wanted: list[str]) -> list[str]:
    """The configured codecs this install can decode (G.722 and Opus need PyAV)."""
    out = []
    for item in wanted:
        if (
            item.split("/")[0].upper() in ("G722", "OPUS")
            and importlib.util.find_spec("av") is None
        ):
            log.warning("sources.sip.codecs: %s needs PyAV (pip install av); not offered", item)
            continue
        out.append(item)
    return out


class SipSource(Source):
    name = "sip"

    def __init__(self, cfg: SipConfig) -> None:
        self.cfg = cfg
        self.rtp = RtpCounters()
        self.uas: SipUas | None = None
        self._networks = [ipaddress.ip_network(n, strict=False) for n in cfg.allow_from]
        self._allowed: dict[str, bool] = {}
        self._routes: dict[str, str] = {}
        self._log = RateLimitedLog(log)
        self._udp: SipUdp | None = None
        self._tcp: SipTcp | None = None
        self._server: asyncio.Server | None = None
        self._tls: SipTcp | None = None
        self._tls_server: asyncio.Server | None = None
        self.tls_port: int | None = None

    @classmethod
    def from_config(cls, config: Config) -> SipSource:
        return cls(config.sources.sip)

    @property
    def port(self) -> int:
        return self.uas.port if self.uas is not None else self.cfg.port

    @property
    def calls(self) -> dict[str, Any]:
        return self.uas.calls if self.uas is not None else {}

    async def start(self, hub: StreamHub) -> None:
        self.hub = hub
        cfg = self.cfg
        limits = RtpLimits(cfg.max_packet_bytes, cfg.jitter_ms, cfg.max_gap_s)
        pool = PortPool(cfg.host, *cfg.rtp_ports)
        ctx = MediaContext(
            hub,
            pool,
            limits,
            self.rtp,
            self.allowed,
            self.warn,
            usable_codecs(cfg.codecs),
            self.local_ip,
            self._srtp_mode(),
        )
        self.uas = SipUas(cfg, ctx)
        await self._bind(self.uas)
        if cfg.tls_port is not None:
            await self._bind_tls(self.uas)
        self.uas.accepting = True
        log.info(
            "SIP on %s:%d (UDP%s%s), RTP ports %d-%d, allow_from %s%s, SRTP %s",
            cfg.host,
            self.port,
            "+TCP" if cfg.tcp else "",
            f", TLS on {self.tls_port}" if self.tls_port is not None else "",
            *cfg.rtp_ports,
            cfg.allow_from,
            f", digest auth ({len(cfg.auth_users)} users)" if cfg.auth_users else "",
            cfg.srtp,
        )

    async def _bind(self, uas: SipUas) -> None:
        """UDP, then TCP on the same port (with port 0, retried until both get the same one)."""
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        where = f"sources.sip.host/port: cannot listen on {cfg.host}"
        for _ in range(BIND_TRIES):
            try:
                transport, self._udp = await loop.create_datagram_endpoint(
                    lambda: SipUdp(uas.handle), local_addr=(cfg.host, cfg.port)
                )
            except OSError as exc:
                raise StreamdError(f"{where}:{cfg.port}/udp ({exc.strerror or exc})") from None
            uas.port = int(transport.get_extra_info("sockname")[1])
            with contextlib.suppress(OSError):  # room for bursts; the kernel caps it at rmem_max
                transport.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES
                )
            if not cfg.tcp:
                return
            self._tcp = self._stream_transport(uas, None)
            try:
                self._server = await asyncio.start_server(self._tcp.handle, cfg.host, uas.port)
                return
            except OSError as exc:
                transport.close()
                if cfg.port:
                    raise StreamdError(f"{where}:{uas.port}/tcp ({exc.strerror or exc})") from None
        raise StreamdError("sources.sip.port: no free port for both UDP and TCP")

    def _srtp_mode(self) -> str:
        mode = self.cfg.srtp
        if mode != "off" and not srtp_available():
            if mode == "required":
                raise StreamdError("sources.sip.srtp: required, but pylibsrtp is not installed")
            log.warning("sources.sip.srtp: pylibsrtp is not installed; RTP/SAVP is refused")
            return "off"
        return mode

    def _stream_transport(self, uas: SipUas, tls: ssl.SSLContext | None) -> SipTcp:
        cfg = self.cfg
        return SipTcp(
            uas.handle,
            cfg.max_message_bytes,
            cfg.tcp_max_connections,
            self._tcp_error,
            allowed=self.allowed,
            max_per_source=cfg.tcp_max_per_source,
            idle_s=cfg.tcp_idle_s,
            tls=tls,
        )

    async def _bind_tls(self, uas: SipUas) -> None:
        """SIP over TLS on ``tls_port``: TCP accept, the allow_from and connection checks, then
        the handshake (:class:`SipTcp`); the certificate and key are read once, here."""
        cfg = self.cfg
        assert cfg.tls_port is not None and cfg.tls_cert and cfg.tls_key
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise StreamdError(
                f"sources.sip.tls_cert/tls_key: cannot load {cfg.tls_cert} ({exc})"
            ) from None
        self._tls = self._stream_transport(uas, context)
        try:
            self._tls_server = await asyncio.start_server(self._tls.handle, cfg.host, cfg.tls_port)
        except OSError as exc:
            where = f"{cfg.host}:{cfg.tls_port}/tls"
            raise StreamdError(f"sources.sip.tls_port: cannot listen on {where} ({exc})") from None
        self.tls_port = int(self._tls_server.sockets[0].getsockname()[1])
        uas.machine.tls_port = self.tls_port

    async def stop(self) -> None:
        """Stop taking calls; BYE and end every call (its streams score what they hold)."""
        if self.uas is not None:
            await self.uas.close()
        for server in (self._server, self._tls_server):
            if server is not None:
                server.close()
        for stream in (self._tcp, self._tls):
            if stream is not None:
                stream.close_all()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()

    def status(self) -> dict[str, Any]:
        uas = self.uas
        jitter = Counter(self.rtp.jitter_closed)
        sip: dict[str, Any] = {}
        if uas is not None:
            for call in uas.calls.values():
                for r in call.receivers.values():
                    jitter.update(r.stats())
            sip = asdict(uas.counters)
            sip["requests"], sip["responses"] = (
                dict(uas.counters.requests),
                dict(uas.counters.responses),
            )
            sip["resent"] = uas.transactions.resent
            streams = [t for t in (self._tcp, self._tls) if t is not None]
            sip["tcp_refused"] = sum(t.refused for t in streams)
            sip["tcp_refused_source"] = sum(t.refused_source for t in streams)
            sip["tcp_idle_closed"] = sum(t.idle_closed for t in streams)
            sip["tcp_open"] = sum(len(t.writers) for t in streams)
            sip["tls_failed"] = self._tls.tls_failed if self._tls else 0
            sip["keepalives"] += sum(t.keepalives for t in streams)
        rtp = {k: v for k, v in asdict(self.rtp).items() if k != "jitter_closed"}
        return {
            "name": self.name,
            "up": uas is not None and uas.accepting,
            "host": self.cfg.host,
            "port": self.port,
            "tcp": self.cfg.tcp,
            "tls_port": self.tls_port,
            "calls": len(self.calls),
            "max_calls": self.cfg.max_calls,
            "rtp_ports_in_use": len(uas.ctx.pool.in_use) if uas else 0,
            "sip": sip,
            "rtp": rtp,
            "jitter": dict(jitter),
        }

    def metric_counters(self) -> dict[str, float]:
        """Flat counters for a Prometheus collector (``streamd_sip_<name>``)."""
        s = self.status()
        out: dict[str, float] = {f"rtp_{k}": int(v) for k, v in s["rtp"].items()}
        out.update({f"sip_{k}": int(v) for k, v in s["sip"].items() if isinstance(v, int)})
        out["calls_open"] = s["calls"]
        out["jitter_lost_packets"] = s["jitter"].get("lost_packets", 0)
        return out

    # -- helpers -------------------------------------------------------------------------------

    def warn(self, msg: str, *args: object) -> None:
        self._log.warning(msg, *args)

    def allowed(self, ip: str) -> bool:
        """``allow_from`` membership, cached: junk floods ask for the same few addresses."""
        ok = self._allowed.get(ip)
        if ok is None:
            try:
                addr = ipaddress.ip_address(ip.split("%", 1)[0])
                ok = any(addr in net for net in self._networks)
            except ValueError:
                ok = False
            if len(self._allowed) >= ALLOW_CACHE:
                self._allowed.clear()
            self._allowed[ip] = ok
        return ok

    def local_ip(self, peer_ip: str) -> str:
        """What to put in SDP and Contact: ``advertise_address``, else the bound address, else
        (bound to 0.0.0.0) the local address of the route to this peer."""
        if self.cfg.advertise_address:
            return self.cfg.advertise_address
        if not ipaddress.ip_address(self.cfg.host).is_unspecified:
            return self.cfg.host
        if peer_ip not in self._routes:
            if len(self._routes) >= ALLOW_CACHE:
                self._routes.clear()
            with socket.socket(
                socket.AF_INET6 if ":" in peer_ip else socket.AF_INET, socket.SOCK_DGRAM
            ) as s:
                s.connect((peer_ip, 9))  # no packet is sent: this only asks the routing table
                self._routes[peer_ip] = str(s.getsockname()[0])
        return self._routes[peer_ip]

    def _tcp_error(self, peer: str, why: str) -> None:
        if self.uas is not None:
            self.uas.counters.tcp_errors += 1
        self.warn("SIP %s: %s", peer, why)
