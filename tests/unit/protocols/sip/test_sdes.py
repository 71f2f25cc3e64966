"""SDES a=crypto lines (RFC 4568) and the SDP answer's SRTP choices."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.protocols.sip.sdes import Crypto, SdesError, choose, parse_crypto
from streamd.protocols.sip.sdp import build_answer, parse_sdp

KEY = bytes(range(30))
INLINE = base64.b64encode(KEY).decode()


def savp_offer(*crypto: str, proto: str = "RTP/SAVP") -> str:
    lines = "".join(f"a=crypto:{c}\r\n" for c in crypto)
    return (
        "v=0\r\no=uac 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio 6000 {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n{lines}"
    )


def test_rfc4568_lines() -> None:
    c = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^20")
    assert (c.tag, c.suite, c.key_salt) == (1, "AES_CM_128_HMAC_SHA1_80", KEY)
    assert parse_crypto(c.line()) == c and INLINE not in repr(c)  # keys never in logs
    for bad, why in [
        (f"1 F8_128_HMAC_SHA1_80 inline:{INLINE}", "not supported"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^20|1:4", "MKI"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "bytes"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE} KDR=1", "session parameters"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!", "base64"),
    ]:
        with pytest.raises(SdesError, match=why):
            parse_crypto(bad)
    chosen = choose([f"1 AES_256_CM_HMAC_SHA1_80 inline:{INLINE}", c.line().replace("1 ", "2 ", 1)])
    assert chosen is not None and chosen.tag == 2


@given(st.text(max_size=200))
def test_any_line_parses_or_is_an_sdes_error(value: str) -> None:
    with contextlib.suppress(SdesError):
        assert isinstance(parse_crypto(value), Crypto)


def test_answers_by_mode() -> None:
    line = f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}"
    secure, plain = parse_sdp(savp_offer(line)), parse_sdp(savp_offer(proto="RTP/AVP"))
    ans = build_answer(secure, "127.0.0.1", [40000], srtp="optional")
    (m,) = ans.media
    assert m.accepted and m.crypto == parse_crypto(line)  # their key decrypts what they send
    (ours,) = [v for k, v in ans.sdp.media[0].attributes if k == "crypto" and v]
    mine = parse_crypto(ours)
    assert (mine.tag, mine.suite) == (1, "AES_CM_128_HMAC_SHA1_80") and mine.key_salt != KEY
    assert "RTP/SAVP" in ans.to_text()
    assert not build_answer(secure, "127.0.0.1", [40000], srtp="off").media[0].accepted
    assert not build_answer(plain, "127.0.0.1", [40000], srtp="required").media[0].accepted
    assert build_answer(plain, "127.0.0.1", [40000], srtp="optional").media[0].crypto is None
    unusable = parse_sdp(savp_offer(f"1 F8_128_HMAC_SHA1_80 inline:{INLINE}"))
    assert not build_answer(unusable, "127.0.0.1", [40000], srtp="required").accepted_any
