"""AudioHook's HTTP message signatures: the documentation's example verifies; anything else is
refused with a reason, and junk never raises."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.protocols.feeds.signature import decode_secret, verify

KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
SECRET = decode_secret("TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU=")
TARGET = "/api/v1/voicebiometrics/ws"
COVERED = (
    '("@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
    '"audiohook-correlation-id" "x-api-key")'
)
# Genesys' AudioHook protocol documentation, "Establishing connection" example.
DOC = {
    "host": "audiohook.example.com",
    "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
    "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "x-api-key": KEY,
    "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "signature-input": f'sig1={COVERED};keyid="{KEY}";nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";'
    'alg="hmac-sha256";created=1641013200;expires=3282026430',
}
NOW = 1641013205.0


def test_the_documentation_example_verifies() -> None:
    assert verify(DOC, TARGET, {KEY: SECRET}, NOW).ok


def sign(headers: dict[str, str], created: int, nonce: str = "N" * 24) -> dict[str, str]:
    """Sign like Genesys does (a test-side signer; the doc vector above anchors both)."""
    params = f'{COVERED};keyid="{KEY}";nonce="{nonce}";alg="hmac-sha256";created={created}'
    base = "\n".join(
        [
            f'"@request-target": {TARGET}',
            f'"@authority": {headers["host"]}',
            *(
                f'"{h}": {headers[h]}'
                for h in (
                    "audiohook-organization-id",
                    "audiohook-session-id",
                    "audiohook-correlation-id",
                    "x-api-key",
                )
            ),
            f'"@signature-params": {params}',
        ]
    )
    mac = base64.b64encode(hmac.new(SECRET, base.encode(), hashlib.sha256).digest()).decode()
    return {**headers, "signature-input": f"sig1={params}", "signature": f"sig1=:{mac}:"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"audiohook-session-id": "another"}, "does not match"),
        ({"host": "evil.example"}, "does not match"),
        ({"x-api-key": "someone-else"}, "keyid does not match"),
        ({"signature": "sig1=:AAAA:"}, "does not match"),
        ({"signature-input": f'sig1=("@authority");keyid="{KEY}";created=1'}, "does not cover"),
        ({"signature": ""}, "not signed"),
    ],
)
def test_tampered_requests_are_refused(change: dict[str, str], reason: str) -> None:
    verdict = verify({**DOC, **change}, TARGET, {KEY: SECRET}, NOW)
    assert not verdict.ok and reason in verdict.reason


def test_freshness_nonce_target_and_unknown_keys() -> None:
    fresh = sign({k: v for k, v in DOC.items() if not k.startswith("signature")}, created=1000)
    assert verify(fresh, TARGET, {KEY: SECRET}, 1005).ok
    assert "expired" in verify(fresh, TARGET, {KEY: SECRET}, 1000 + 60).reason  # a replay
    assert "future" in verify(fresh, TARGET, {KEY: SECRET}, 900).reason
    assert "does not match" in verify(fresh, "/other", {KEY: SECRET}, 1005).reason
    assert "does not match" in verify(fresh, TARGET, {}, 1005).reason  # unknown key
    short = sign({k: v for k, v in DOC.items() if not k.startswith("signature")}, 1000, "x" * 8)
    assert "nonce" in verify(short, TARGET, {KEY: SECRET}, 1005).reason


@given(st.text(max_size=300), st.text(max_size=300))
def test_junk_signature_headers_never_raise(sig_input: str, sig: str) -> None:
    verdict = verify({**DOC, "signature-input": sig_input, "signature": sig}, TARGET, {}, NOW)
    assert not verdict.ok and verdict.reason


def test_secrets_must_be_base64() -> None:
    with pytest.raises(ValueError, match="base64"):
        decode_secret("not base64!")
