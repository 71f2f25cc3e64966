"""The RTP port pool: even UDP ports of ``sources.sip.rtp_ports``, one per answered m-line."""

from __future__ import annotations

import errno
import socket

from streamd.errors import StreamdError

RECV_BUFFER_BYTES = 256 * 1024


class PortsExhausted(StreamdError):
    """Every port in ``sources.sip.rtp_ports`` is taken."""


class PortPool:
    """Even ports of ``[low, high]`` bound round-robin, so a port just freed is not reused at once
    (late packets of the old call would land in the new one)."""

    def __init__(self, host: str, low: int, high: int) -> None:
        self.host = host
        self.ports = range(low + (low % 2), high + 1, 2)
        self.in_use: set[int] = set()
        self._next = 0

    def bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(len(self.ports)):
            port = self.ports[self._next]
            self._next = (self._next + 1) % len(self.ports)
            if port in self.in_use:
                continue
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)
                sock.bind((self.host, port))
            except OSError as exc:
                sock.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue  # another process holds it: try the next one
                raise PortsExhausted(
                    f"sources.sip.rtp_ports: cannot bind {self.host}:{port} ({exc})"
                ) from None
            sock.setblocking(False)
            self.in_use.add(port)
            return sock
        raise PortsExhausted(f"sources.sip.rtp_ports: all {len(self.ports)} even ports are in use")

    def release(self, port: int) -> None:
        self.in_use.discard(port)
