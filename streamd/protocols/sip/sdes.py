"""SDES: SRTP keys carried in SDP ``a=crypto`` lines (RFC 4568), sans-I/O.

``a=crypto:<tag> <suite> inline:<base64 key||salt>[|lifetime][|MKI:length] [session params]``.
We receive only, so the key that matters is the *offerer's*: it decrypts what they send. The
answer still carries a key of ours for the chosen line (RFC 4568 §6.1: same tag, same suite).
Supported: ``AES_CM_128_HMAC_SHA1_80`` and ``AES_CM_128_HMAC_SHA1_32`` (30-byte key and salt),
no MKI, no session parameters (a line with them is skipped: the next offered line may do).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
KEY_SALT_BYTES = 30  # 16-byte master key + 14-byte master salt
SAVP_PROTOCOLS = ("RTP/SAVP", "RTP/SAVPF")
_CRYPTO = re.compile(r"([0-9]{1,9}) +([A-Za-z0-9_]+) +(.+)")
_LIFETIME = re.compile(r"(?:2\^)?[0-9]{1,20}")


class SdesError(ValueError):
    """An ``a=crypto`` line we cannot use."""


@dataclass(frozen=True, slots=True)
class Crypto:
    """One usable ``a=crypto`` line: its tag, suite and master key with salt."""

    tag: int
    suite: str
    key_salt: bytes = b""

    def line(self) -> str:
        """The attribute value: ``1 AES_CM_128_HMAC_SHA1_80 inline:...``."""
        inline = base64.b64encode(self.key_salt).decode()
        return f"{self.tag} {self.suite} inline:{inline}"

    def __repr__(self) -> str:  # never log a key
        return f"Crypto(tag={self.tag}, suite={self.suite})"


def parse_crypto(value: str) -> Crypto:
    """One ``a=crypto`` value; :class:`SdesError` for what we do not support or cannot read."""
    match = _CRYPTO.fullmatch(value.strip())
    if match is None:
        raise SdesError("malformed a=crypto")
    tag, suite, params = int(match.group(1)), match.group(2).upper(), match.group(3)
    if suite not in SUITES:
        raise SdesError(f"crypto suite {suite[:40]} not supported")
    key_params, *session = params.split(" ")
    if session and any(s for s in session):
        raise SdesError("session parameters not supported")
    if ";" in key_params:
        raise SdesError("several keys in one line not supported")
    method, _, info = key_params.partition(":")
    if method != "inline":
        raise SdesError(f"key method {method[:20]!r} is not inline")
    key, *extra = info.split("|")
    for item in extra:
        if ":" in item:
            raise SdesError("MKI not supported")
        if not _LIFETIME.fullmatch(item):
            raise SdesError(f"malformed key lifetime {item[:20]!r}")
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise SdesError("key is not base64") from None
    if len(raw) != KEY_SALT_BYTES:
        raise SdesError(f"key and salt are {len(raw)} bytes, not {KEY_SALT_BYTES}")
    return Crypto(tag, suite, raw)


def choose(values: Sequence[str]) -> Crypto | None:
    """The first offered ``a=crypto`` line we can use (the offer's order is its preference)."""
    for value in values:
        try:
            return parse_crypto(value)
        except SdesError:
            continue
    return None


def answer_crypto(offered: Crypto, new_key: Callable[[int], bytes] = secrets.token_bytes) -> Crypto:
    """Our line for the answer: the offer's tag and suite with a fresh key of ours."""
    return Crypto(offered.tag, offered.suite, new_key(KEY_SALT_BYTES))
