"""WebRTC ingest: ``POST /v1/webrtc/offer`` answers a browser's offer; its audio becomes a stream.

One peer connection brings one stream (``source: webrtc``, ``leg: browser``). The server does not
trickle ICE: the answer carries every candidate, so the client must send its offer once its own
gathering is complete. The stream opens on the first decoded frame (its rate comes from the
frame) and ends when the track ends or the connection closes or fails. A peer that never
connects is dropped after ``CONNECT_TIMEOUT_S`` so it cannot hold one of ``max_peers`` slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from streamd.errors import ConfigError
from streamd.ingest.base import Source
from streamd.ingest.webrtc.media import MAX_GAP_S, StreamWriter, restrict_host_addresses
from streamd.pipeline.audio import StreamInfo
from streamd.pipeline.hub import HubRefused
from streamd.protocols.credentials import CHALLENGE_HEADERS, UNAUTHORIZED_JSON, token_ok

if TYPE_CHECKING:
    from streamd.config import Config
    from streamd.pipeline.hub import StreamHub
    from streamd.pipeline.stream import StreamPipeline

log = logging.getLogger("streamd.ingest.webrtc.source")

OFFER_PATH = "/v1/webrtc/offer"
CONNECT_TIMEOUT_S = 30.0
# A browser that vanishes (tab killed, laptop shut, network gone) sends nothing more: no BYE, no
# DTLS close. ICE consent (RFC 7675) gives up after 30 s; audio stops at once, so a peer whose
# audio stopped for this long is gone, and its stream ends well within the consent timeout.
# Browsers send audio frames without pause (silence included) while a track is live.
MEDIA_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 10.0
MAX_SDP_BYTES = 64 * 1024
MAX_LABELS = 32
MAX_LABEL_CHARS = 256
_CREDENTIALS = re.compile(r"^(turns?):([^:@/]+):([^@/]+)@(.+)$")


def parse_ice_servers(urls: list[str]) -> list[RTCIceServer]:
    """``stun:host:port``, ``turn:host:port?transport=udp``; TURN credentials as
    ``turn:USER:PASS@host:port``."""
    from aiortc.rtcicetransport import parse_stun_turn_uri

    servers = []
    for i, url in enumerate(urls):
        m = _CREDENTIALS.match(url)
        plain, user, secret = (f"{m[1]}:{m[4]}", m[2], m[3]) if m else (url, None, None)
        try:
            parse_stun_turn_uri(plain)
        except ValueError as exc:
            raise ConfigError(
                f"sources.webrtc.ice_servers.{i}: {url!r} is not a stun:/turn: URL ({exc})"
            ) from None
        servers.append(RTCIceServer(urls=plain, username=user, credential=secret))
    return servers


def _error(status: type[web.HTTPException], detail: str, request: web.Request) -> web.HTTPException:
    log.warning("webrtc offer from %s refused (%d): %s", request.remote, status.status_code, detail)
    return status(text=json.dumps({"error": detail}), content_type="application/json")


def _labels(raw: Any, request: web.Request) -> dict[str, str]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _error(web.HTTPBadRequest, "labels: must be an object of string values", request)
    if len(raw) > MAX_LABELS:
        raise _error(web.HTTPBadRequest, f"labels: at most {MAX_LABELS} entries", request)
    labels: dict[str, str] = {}
    for k, v in raw.items():
        if (
            not isinstance(v, (str, int, float, bool))
            or len(str(k)) > 64
            or len(str(v)) > MAX_LABEL_CHARS
        ):
            raise _error(
                web.HTTPBadRequest,
                f"labels.{str(k)[:64]}: must be a string up to {MAX_LABEL_CHARS} chars",
                request,
            )
        labels[str(k)] = str(v)
    labels["remote_addr"] = request.remote or ""
    agent = request.headers.get("User-Agent")
    if agent:
        labels.setdefault("user_agent", agent[:MAX_LABEL_CHARS])
    return labels


async def _read_offer(request: web.Request) -> tuple[str, dict[str, str]]:
    # application/json makes a browser send a CORS preflight first, which this server never
    # answers: a page on another site cannot make visitors' browsers open peers here.
    if request.content_type != "application/json":
        raise _error(
            web.HTTPUnsupportedMediaType,
            f"Content-Type must be application/json, got {request.content_type!r}",
            request,
        )
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise _error(web.HTTPBadRequest, f"body is not JSON ({exc})", request) from None
    if not isinstance(body, dict):
        raise _error(
            web.HTTPBadRequest,
            'body must be {"sdp": ..., "type": "offer", "labels": {...}}',
            request,
        )
    if body.get("type") != "offer":
        raise _error(
            web.HTTPBadRequest, f'type: must be "offer", got {body.get("type")!r}', request
        )
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise _error(web.HTTPBadRequest, "sdp: missing or not a string", request)
    if len(sdp) > MAX_SDP_BYTES:
        raise _error(web.HTTPBadRequest, f"sdp: larger than {MAX_SDP_BYTES} bytes", request)
    if not sdp.lstrip().startswith("v=0"):
        raise _error(
            web.HTTPBadRequest, "sdp: not a session description (must start with v=0)", request
        )
    if "\nm=audio " not in sdp.replace("\r\n", "\n"):
        raise _error(web.HTTPBadRequest, "sdp: the offer has no audio (m=audio) section", request)
    return sdp, _labels(body.get("labels"), request)


class Peer:
    """One browser session: its peer connection, its stream and the task that feeds it."""

    def __init__(self, source: WebRtcSource, pc: RTCPeerConnection, info: StreamInfo) -> None:
        self.source = source
        self.pc = pc
        self.info = info
        self.created = time.monotonic()
        self.stream: StreamPipeline | None = None
        self.writer: StreamWriter | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.reason = ""
        self.finished = asyncio.Event()
        self._track_seen = False
        self._watch: asyncio.Task[Any] | None = None

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"webrtc-{name}-{self.info.call_id[:8]}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio" or self._track_seen:
            return  # other transceivers were made inactive before the answer
        self._track_seen = True
        self.spawn(self._pump(track), "pump")

    async def _pump(self, track: MediaStreamTrack) -> None:
        """Frames into the stream until the track ends; then score what is held and end it."""
        reason = "track ended"
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(track.recv(), MEDIA_TIMEOUT_S)
                except asyncio.TimeoutError:
                    reason = f"no audio for {MEDIA_TIMEOUT_S:.0f} s (the browser is gone)"
                    log.warning("webrtc peer %s: %s", self.info.call_id, reason)
                    break
                if self.writer is None and not self._open(frame):
                    reason = "refused by the hub"
                    break
                assert self.writer is not None
                self.writer.push(frame)
        except MediaStreamError:
            pass
        except Exception:  # a frame we cannot use must end this stream, not leave it hanging
            log.exception("webrtc peer %s: cannot use the received audio", self.info.call_id)
            reason = "bad audio from the peer"
        finally:
            self.reason = self.reason or reason
            await self._close_stream()
            self.spawn(self.finish(self.reason), "finish")

    def _open(self, frame: Any) -> bool:
        try:
            self.stream = self.source.hub.open_stream(self.info, int(frame.sample_rate))
        except HubRefused as exc:
            log.warning("webrtc peer %s: stream refused: %s", self.info.call_id, exc)
            return False
        self.writer = StreamWriter(self.stream, MAX_GAP_S)
        return True

    async def _close_stream(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                await stream.close(self.reason or "ended")
            except Exception:
                log.exception("webrtc stream %s did not close cleanly", self.info.stream_id)

    def on_state(self) -> None:
        state = self.pc.connectionState
        log.info("webrtc peer %s: connection %s", self.info.call_id, state)
        if state in ("failed", "closed"):
            self.spawn(self.finish(f"peer connection {state}"), "finish")

    async def watch_connect(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if self.pc.connectionState not in ("connected", "closed"):
            await self.finish(f"not connected within {CONNECT_TIMEOUT_S:.0f} s")

    async def finish(self, reason: str) -> None:
        """Close the connection (ending the track) and the stream; idempotent."""
        if self.finished.is_set():
            return
        self.finished.set()
        self.reason = self.reason or reason
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        await self.pc.close()  # ends the remote track, so the pump closes the stream
        await self._close_stream()
        self.source.forget(self)
        if self.writer is not None:
            t = self.writer.timeline
            log.info(
                "webrtc peer %s finished (%s): %d frames, %d lost, %d discontinuities",
                self.info.call_id,
                self.reason,
                self.writer.frames,
                t.lost_frames,
                t.discontinuities,
            )


class WebRtcSource(Source):
    name = "webrtc"

    def __init__(
        self,
        host: str = "127.0.0.1",
        ice_servers: list[str] | None = None,
        max_peers: int = 20,
        tokens: list[str] | None = None,
        max_peers_per_address: int = 4,
    ) -> None:
        if host not in ("", "0.0.0.0", "::"):
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ConfigError(
                    f"sources.webrtc.host: {host!r} is not an IP address (ICE host candidates "
                    "need one; 0.0.0.0 means every interface)"
                ) from None
        self.host = host
        self.ice_servers = parse_ice_servers(list(ice_servers or []))
        self.max_peers = max_peers
        self.max_per_address = max_peers_per_address
        self.pending_from: Counter[str] = Counter()  # offers being answered, by address
        self.tokens = list(tokens or [])
        self.peers: dict[str, Peer] = {}
        self.pending = 0  # offers being answered: they count against max_peers too
        self.stopping = False
        self.offers = 0
        self.refused = 0

    @classmethod
    def from_config(cls, config: Config) -> WebRtcSource:
        w = config.sources.webrtc
        return cls(
            w.host, w.ice_servers, w.max_peers, config.server.tokens, w.max_peers_per_address
        )

    def setup_http(self, app: web.Application) -> None:
        app.router.add_post(OFFER_PATH, self.handle_offer)

    async def handle_offer(self, request: web.Request) -> web.Response:
        if not token_ok(request.headers, request.query, self.tokens):
            raise web.HTTPUnauthorized(
                text=UNAUTHORIZED_JSON, content_type="application/json", headers=CHALLENGE_HEADERS
            )
        hub: StreamHub | None = getattr(self, "hub", None)
        if hub is None or self.stopping or not hub.accepting:
            self.refused += 1
            raise _error(
                web.HTTPServiceUnavailable, "not accepting streams (starting or stopping)", request
            )
        if len(self.peers) + self.pending >= self.max_peers:
            self.refused += 1
            raise _error(
                web.HTTPServiceUnavailable,
                f"sources.webrtc.max_peers ({self.max_peers}) reached",
                request,
            )
        if len(hub.streams) >= hub.config.sources.max_streams:
            self.refused += 1
            raise _error(
                web.HTTPServiceUnavailable,
                f"sources.max_streams ({hub.config.sources.max_streams}) reached",
                request,
            )
        addr = request.remote or ""
        if self.from_address(addr) >= self.max_per_address:
            self.refused += 1  # one client must not take every slot from the others
            raise _error(
                web.HTTPTooManyRequests,
                f"sources.webrtc.max_peers_per_address ({self.max_per_address}) reached",
                request,
            )
        self.pending += 1
        self.pending_from[addr] += 1
        try:
            sdp, labels = await _read_offer(request)
            self.offers += 1
            return await self._answer(request, sdp, labels)
        finally:
            self.pending -= 1
            self.pending_from[addr] -= 1
            if not self.pending_from[addr]:
                del self.pending_from[addr]

    def from_address(self, addr: str) -> int:
        """Peers and offers in progress from one address."""
        peers = sum(1 for p in self.peers.values() if p.info.labels.get("remote_addr") == addr)
        return peers + self.pending_from[addr]

    async def _answer(self, request: web.Request, sdp: str, labels: dict[str, str]) -> web.Response:
        call_id = uuid.uuid4().hex
        info = StreamInfo.new(source="webrtc", leg="browser", call_id=call_id, labels=labels)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice_servers))
        peer = Peer(self, pc, info)
        pc.on("track", peer.on_track)
        pc.on("connectionstatechange", peer.on_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc raises ValueError, KeyError, InvalidStateError...
            await pc.close()
            raise _error(
                web.HTTPBadRequest,
                f"sdp: cannot use this offer ({type(exc).__name__}: {exc})",
                request,
            ) from None
        audio_seen = False
        for t in pc.getTransceivers():
            if t.kind == "audio" and not audio_seen:
                audio_seen = True
                t.direction = "recvonly"
            else:
                t.direction = "inactive"  # video, or a second audio track: not decoded
        try:
            with restrict_host_addresses(self.host):
                await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await pc.close()
            raise _error(
                web.HTTPBadRequest,
                f"sdp: cannot answer this offer ({type(exc).__name__}: {exc})",
                request,
            ) from None
        self.peers[call_id] = peer
        peer._watch = peer.spawn(peer.watch_connect(), "connect-timeout")
        log.info(
            "webrtc peer %s from %s: answered (%d peers)", call_id, request.remote, len(self.peers)
        )
        local = pc.localDescription
        return web.json_response(
            {"sdp": local.sdp, "type": local.type, "stream_id": info.stream_id, "call_id": call_id}
        )

    def forget(self, peer: Peer) -> None:
        if self.peers.get(peer.info.call_id) is peer:
            del self.peers[peer.info.call_id]

    async def stop(self) -> None:
        """Stop answering, close every peer; their streams score what they hold and end."""
        self.stopping = True
        peers = list(self.peers.values())
        if not peers:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(p.finish("shutdown") for p in peers), return_exceptions=True),
                CLOSE_TIMEOUT_S,
            )
        for p in peers:
            for task in list(p.tasks):
                task.cancel()

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "up": not self.stopping,
            "peers": len(self.peers),
            "max_peers": self.max_peers,
            "host": self.host,
            "offers": self.offers,
            "refused": self.refused,
        }
