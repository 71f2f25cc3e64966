"""Real RTP from sipp's bundled capture, shared by the RTP and jitter-buffer tests."""

from __future__ import annotations

import struct
from pathlib import Path

SIPP_PCAP = Path("/usr/share/sip-tester/g711a.pcap")


def pcap_udp_payloads(path: Path) -> list[bytes]:
    """UDP payloads of a classic little-endian Ethernet/IPv4 pcap (the format sipp ships)."""
    data = path.read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    assert magic == 0xA1B2C3D4 and linktype == 1
    out, offset = [], 24
    while offset + 16 <= len(data):
        incl = struct.unpack_from("<IIII", data, offset)[2]
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:  # IPv4, UDP
            continue
        ihl = (frame[14] & 0x0F) * 4
        out.append(frame[14 + ihl + 8 :])
    return out
