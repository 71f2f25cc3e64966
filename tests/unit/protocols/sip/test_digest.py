"""Digest authentication (RFC 7616/8760): the pure checker, fuzzed, and the UAS's 401 flow."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.protocols.sip.digest import MAX_NONCES, DigestAuth, digest_response, parse_credentials
from streamd.protocols.sip.message import SipResponse
from streamd.protocols.sip.uas import Negotiate, Uas

from tests.helpers.sip_samples import SIPP_OFFER
from tests.unit.protocols.sip.test_uas import UDP, message, sent

URI = "sip:service@127.0.0.1"


def credentials(
    challenge: str,
    *,
    user: str = "sbc",
    password: str = "s3cret",
    nc: int = 1,
    uri: str = URI,
    method: str = "INVITE",
) -> str:
    p = parse_credentials(challenge)
    algorithm = p["algorithm"]
    response = digest_response(
        algorithm,
        username=user,
        realm=p["realm"],
        password=password,
        method=method,
        uri=uri,
        nonce=p["nonce"],
        nc=f"{nc:08x}",
        cnonce="abc",
    )
    return (
        f'Digest username="{user}", realm="{p["realm"]}", nonce="{p["nonce"]}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm}, qop=auth, nc={nc:08x}, cnonce="abc"'
    )


def test_rfc7616_sha256_example() -> None:
    """RFC 7616 §3.9.1's SHA-256 example, as a test vector."""
    assert (
        digest_response(
            "SHA-256",
            username="Mufasa",
            realm="http-auth@example.org",
            password="Circle of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            nc="00000001",
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )
        == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )


def test_both_algorithms_verify_once_and_stale_nonces_are_challenged_again() -> None:
    auth = DigestAuth("streamd", {"sbc": "s3cret"}, nonce_ttl_s=60)
    sha, md5 = auth.challenge(100.0)[0], auth.challenge(100.0)[1]  # one nonce per 401
    assert "algorithm=SHA-256" in sha and "algorithm=MD5" in md5 and 'qop="auth"' in sha
    for challenge in (sha, md5):
        good = credentials(challenge)
        assert auth.check("INVITE", URI, [good], 101.0).ok
        assert auth.check("INVITE", URI, [good], 102.0).verdict == "bad"  # nc replayed
        assert auth.check("INVITE", URI, [credentials(challenge, nc=2)], 102.0).ok
    assert auth.check("INVITE", URI, [credentials(sha, nc=3)], 161.0).verdict == "stale"
    assert "stale=true" in auth.challenge(161.0, stale=True)[0]
    fresh = auth.challenge(200.0)[0]
    assert auth.check("INVITE", URI, [credentials(fresh, password="nope")], 201).verdict == "bad"
    assert auth.check("INVITE", URI, [credentials(fresh, user="eve")], 201).verdict == "bad"
    assert auth.check("INVITE", URI, [credentials(fresh, uri="sip:x@y")], 201).verdict == "bad"
    sipp_style = credentials(auth.challenge(200.0)[0], uri="sip:127.0.0.1")  # host only: fine
    assert auth.check("INVITE", URI, [sipp_style], 201).ok
    assert auth.check("INVITE", URI, [], 201).verdict == "missing"
    other = DigestAuth("streamd", {"sbc": "s3cret"})  # another key: our nonce is not theirs
    assert other.check("INVITE", URI, [credentials(fresh)], 201).why == "nonce not ours"


def test_the_replay_table_is_bounded_and_forgotten_nonces_never_pass_again() -> None:
    auth = DigestAuth("streamd", {"sbc": "s3cret"}, nonce_ttl_s=1e9)
    first = credentials(auth.challenge(0.0)[0])
    assert auth.check("INVITE", URI, [first], 0.5).ok
    for n in range(MAX_NONCES):
        assert auth.check("INVITE", URI, [credentials(auth.challenge(1.0 + n)[0])], 2.0 + n).ok
    assert len(auth._counts) == MAX_NONCES
    assert auth.check("INVITE", URI, [first], 1e6).verdict == "stale"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.floats(allow_nan=False, allow_infinity=False))
def test_any_header_is_a_verdict_never_an_exception(value: str, now: float) -> None:
    auth = DigestAuth("streamd", {"sbc": "s3cret"})
    assert auth.check("INVITE", URI, [value], now).verdict in ("missing", "bad", "stale")


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["username", "realm", "nonce", "uri", "response", "qop",
                                        "nc", "cnonce", "algorithm"]),
                       st.text(alphabet=st.characters(blacklist_characters='"\\\r\n'),
                               max_size=40)))  # fmt: skip
def test_tampered_fields_never_pass(fields: dict[str, str]) -> None:
    auth = DigestAuth("streamd", {"sbc": "s3cret"})
    good = parse_credentials(credentials(auth.challenge(0.0)[0]))
    tampered = {**good, **fields}
    value = "Digest " + ", ".join(f'{k}="{v}"' for k, v in tampered.items())
    outcome = auth.check("INVITE", URI, [value], 1.0)
    assert outcome.ok == (tampered == good)


def test_the_uas_challenges_a_new_invite_and_takes_the_answer() -> None:
    auth = DigestAuth("streamd", {"sbc": "s3cret"}, algorithms=["SHA-256"])
    uas = Uas(
        port=5060,
        max_calls=4,
        max_message_bytes=65535,
        answer_delay_s=0,
        allowed=lambda ip: ip.startswith("127."),
        local_ip=lambda ip: "127.0.0.1",
        auth=auth,
    )
    uas.accepting = True
    out = sent(uas.receive(message("INVITE", "a", "z9hG4bKa1", 1, body=SIPP_OFFER), UDP, 10.0))
    (challenge,) = [m for m in out if isinstance(m, SipResponse)]
    assert challenge.status == 401 and uas.calls == {}
    (www,) = challenge.headers.get_all("WWW-Authenticate")
    retry = message("INVITE", "a", "z9hG4bKa2", 2, body=SIPP_OFFER).replace(
        b"Max-Forwards: 70", f"Authorization: {credentials(www)}\r\nMax-Forwards: 70".encode()
    )
    actions = uas.receive(retry, UDP, 11.0)
    assert any(isinstance(a, Negotiate) for a in actions)
    wrong = message("INVITE", "b", "z9hG4bKb1", 1, body=SIPP_OFFER).replace(
        b"Max-Forwards: 70",
        f"Authorization: {credentials(www, password='x', nc=2)}\r\nMax-Forwards: 70".encode(),
    )
    (reply,) = [m for m in sent(uas.receive(wrong, UDP, 12.0)) if isinstance(m, SipResponse)]
    assert reply.status == 401 and uas.counters.auth_failures == 1
    assert uas.counters.auth_challenges == 2 and list(uas.calls) == ["a"]
    assert re.search(r'nonce="[^"]+"', reply.headers.get("WWW-Authenticate") or "")
