"""SRTP receive (RFC 3711) with the key an offer gave by SDES (:mod:`streamd.protocols.sip.sdes`).

A thin wrapper around ``pylibsrtp`` (libsrtp, as aiortc uses it): authenticate and decrypt one
packet, or say it failed (wrong key, tampered, replayed). libsrtp keeps the replay window and
the rollover counter per SSRC, so reordered packets within its window still pass.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from streamd.protocols.sip.sdes import Crypto


def available() -> bool:
    """Whether ``pylibsrtp`` is installed (without it, RTP/SAVP m-lines are refused)."""
    return importlib.util.find_spec("pylibsrtp") is not None


class SrtpReceiver:
    """Inbound SRTP for one m-line; any SSRC the key holder sends is accepted."""

    def __init__(self, crypto: Crypto) -> None:
        from pylibsrtp import Error, Policy, Session

        profiles = {
            "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
        }
        policy = Policy(
            key=crypto.key_salt,
            ssrc_type=Policy.SSRC_ANY_INBOUND,
            srtp_profile=profiles[crypto.suite],
        )
        self.crypto = crypto
        self._error: type[Exception] = Error
        self._session: Any = Session(policy)

    def unprotect(self, data: bytes) -> bytes | None:
        """The plain RTP packet, or None when ``data`` does not authenticate (or is a replay)."""
        try:
            plain: bytes = self._session.unprotect(data)
        except self._error:
            return None
        return plain
