"""HTTP message signatures (RFC 9421) as Genesys AudioHook signs its websocket upgrades.

Genesys signs every connection request with the integration's client secret (HMAC-SHA256,
``keyid`` = the ``X-API-KEY``) over ``@request-target``, ``@authority`` and the
``Audiohook-Organization-Id``, ``-Session-Id``, ``-Correlation-Id`` and ``X-API-KEY`` headers,
with ``created``, ``expires`` and a ``nonce``. With a secret configured, a request whose
signature is missing, stale, does not cover those components or does not match is refused
before the upgrade: the API key alone travels in clear text in every request and proves
little. Pure: headers, target and the clock are passed in. Structured fields are parsed with
``http-sfv`` (a well-kept RFC 8941 implementation); the signature base is assembled here, as it
is short and RFC 9421 §2.5 defines it exactly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList

REQUIRED = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
MAX_AGE_S = 10  # a signature older than this is stale (replay window)
CLOCK_SKEW_S = 3
MIN_NONCE = 22  # characters, as Genesys' reference server asks
MAX_FIELD = 4096  # bytes of Signature / Signature-Input we parse at most


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""


def _fail(reason: str) -> Verdict:
    return Verdict(False, reason)


def decode_secret(secret: str) -> bytes:
    """Genesys shows client secrets base64-encoded; the HMAC key is the decoded bytes."""
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the client secret must be base64, as Genesys shows it") from None


def _canonical(value: str) -> str:
    return " ".join(value.strip().split("\r\n"))


def verify(
    headers: Mapping[str, str],
    target: str,
    secrets: Mapping[str, bytes],
    now: float,
) -> Verdict:
    """Check the request's signature against ``secrets`` (API key → HMAC key).

    ``target`` is the request target as received (path and query); ``@authority`` is the
    ``Host`` header.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    raw_input, raw_sig = lower.get("signature-input"), lower.get("signature")
    if not raw_input or not raw_sig:
        return _fail("request is not signed (Signature and Signature-Input headers)")
    if len(raw_input) > MAX_FIELD or len(raw_sig) > MAX_FIELD:
        return _fail("signature headers too large")
    inputs, sigs = Dictionary(), Dictionary()
    try:
        inputs.parse(raw_input.encode("ascii"))
        sigs.parse(raw_sig.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return _fail("signature headers are not valid structured fields")
    if len(inputs) != 1:
        return _fail("expected exactly one signature")
    label = next(iter(inputs))
    covered, signature = inputs[label], sigs.get(label)
    if not isinstance(covered, InnerList):
        return _fail("Signature-Input is not an inner list")
    if signature is None or not isinstance(signature.value, bytes):
        return _fail(f"no signature for label {label!r}")
    params = dict(covered.params)
    names = [item.value for item in covered]
    if any(not isinstance(n, str) for n in names) or any(item.params for item in covered):
        return _fail("covered components must be plain strings")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        return _fail(f"signature does not cover {', '.join(missing)}")
    if len(set(names)) != len(names):
        return _fail("a component is covered twice")
    if params.get("alg", "hmac-sha256") != "hmac-sha256":
        return _fail(f"unsupported algorithm {params.get('alg')!r}")
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or len(nonce) < MIN_NONCE:
        return _fail("missing or short nonce")
    created, expires = params.get("created"), params.get("expires")
    if not isinstance(created, int) or created > now + CLOCK_SKEW_S:
        return _fail("missing created time, or one in the future")
    if created + MAX_AGE_S < now - CLOCK_SKEW_S or (
        isinstance(expires, int) and expires < now - CLOCK_SKEW_S
    ):
        return _fail("signature expired")
    keyid = params.get("keyid")
    if not isinstance(keyid, str) or keyid != lower.get("x-api-key", "").strip():
        return _fail("keyid does not match X-API-KEY")
    lines = []
    for name in names:
        if name == "@request-target":
            value = target
        elif name == "@authority":
            value = lower.get("host", "").strip().lower()
        elif name.startswith("@"):
            return _fail(f"unsupported derived component {name}")
        elif name in lower:
            value = _canonical(lower[name])
        else:
            return _fail(f"covered header {name} is missing")
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {covered}')
    key = secrets.get(keyid)
    # Unknown key: compare against a throwaway key anyway, so timing says nothing about keys.
    expected = hmac.new(key or b"\0" * 32, "\n".join(lines).encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature.value) or key is None:
        return _fail("signature does not match")
    return Verdict(True)
