"""Realistic SIP/SDP/SIPREC messages shared by the SIP, SDP and SIPREC tests.

Written for these tests in the shape real peers send: sipp's built-in ``uac`` scenario with its
keywords filled in, and a SIPREC INVITE as an SBC (the SRC) sends it to a recorder (the SRS).
"""

from __future__ import annotations

SIPP_OFFER = (
    "v=0\r\n"
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
)


def sipp_invite(body: str = SIPP_OFFER, call: int = 1) -> bytes:
    """What ``sipp -sn uac 127.0.0.1:5060`` puts on the wire for call number ``call``."""
    head = (
        "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-{call}-0\r\n"
        f"From: sipp <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag00{call}\r\n"
        "To: service <sip:service@127.0.0.1:5060>\r\n"
        f"Call-ID: {call}-4242@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: sip:sipp@127.0.0.1:5061\r\n"
        "Max-Forwards: 70\r\n"
        "Subject: Performance Test\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body.encode())}\r\n"
        "\r\n"
    )
    return (head + body).encode()


SIPREC_SDP = (
    "v=0\r\n"
    "o=SBC 2890844526 2890844526 IN IP4 198.51.100.7\r\n"
    "s=SIP Call\r\n"
    "c=IN IP4 198.51.100.7\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=label:1\r\n"
    "a=sendonly\r\n"
    "m=audio 49172 RTP/AVP 8 0 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=label:2\r\n"
    "a=sendonly\r\n"
)

CALLER_ID = "srfBElmCRp2QB23b7Mpk0w=="
AGENT_ID = "zSfPoSvdSDCmU3A3TRDxAw=="
STREAM_1 = "UAAMm5GRQKSCMVvLyl4rFw=="
STREAM_2 = "i1Pz3to5hGk8fuXl+PbwCw=="
SESSION_ID = "hVpd7YQgRW2nD22h7q60JQ=="

SIPREC_METADATA = f"""<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <group group_id="7+OTCyoxTmqmqyA/1weDAg==">
    <associate-time>2026-01-05T10:00:00Z</associate-time>
  </group>
  <session session_id="{SESSION_ID}">
    <sipSessionID>ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2</sipSessionID>
    <group-ref>7+OTCyoxTmqmqyA/1weDAg==</group-ref>
    <start-time>2026-01-05T10:00:00Z</start-time>
  </session>
  <participant participant_id="{CALLER_ID}">
    <nameID aor="sip:+15551230001@carrier.example.net">
      <name xml:lang="en">Alice Caller</name>
    </nameID>
  </participant>
  <participant participant_id="{AGENT_ID}">
    <nameID aor="sip:agent42@callcenter.example.com">
      <name xml:lang="en">Agent 42</name>
    </nameID>
  </participant>
  <stream stream_id="{STREAM_1}" session_id="{SESSION_ID}">
    <label>1</label>
  </stream>
  <stream stream_id="{STREAM_2}" session_id="{SESSION_ID}">
    <label>2</label>
  </stream>
  <sessionrecordingassoc session_id="{SESSION_ID}">
    <associate-time>2026-01-05T10:00:00Z</associate-time>
  </sessionrecordingassoc>
  <participantsessionassoc participant_id="{CALLER_ID}" session_id="{SESSION_ID}">
    <associate-time>2026-01-05T10:00:00Z</associate-time>
  </participantsessionassoc>
  <participantstreamassoc participant_id="{CALLER_ID}">
    <send>{STREAM_1}</send>
    <recv>{STREAM_2}</recv>
  </participantstreamassoc>
  <participantstreamassoc participant_id="{AGENT_ID}">
    <send>{STREAM_2}</send>
    <recv>{STREAM_1}</recv>
  </participantstreamassoc>
</recording>
"""

BOUNDARY = "unique-boundary-1"


def siprec_body(sdp: str = SIPREC_SDP, metadata: str = SIPREC_METADATA) -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        "Content-Type: application/sdp\r\n"
        "\r\n"
        f"{sdp}"
        f"\r\n--{BOUNDARY}\r\n"
        "Content-Type: application/rs-metadata+xml\r\n"
        "Content-Disposition: recording-session\r\n"
        "\r\n"
        f"{metadata}"
        f"\r\n--{BOUNDARY}--\r\n"
    ).encode()


def siprec_invite(body: bytes | None = None) -> bytes:
    body = siprec_body() if body is None else body
    head = (
        "INVITE sip:recorder@192.0.2.5:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-src-77a1;rport\r\n"
        "Max-Forwards: 70\r\n"
        "Contact: <sip:src@198.51.100.7:5060>;+sip.src\r\n"
        "To: <sip:recorder@192.0.2.5>\r\n"
        'From: "Recording SBC" <sip:src@198.51.100.7>;tag=8f3b2a91\r\n'
        "Call-ID: 0f7d3c1e-rs-1@198.51.100.7\r\n"
        "CSeq: 101 INVITE\r\n"
        "Require: siprec\r\n"
        "Accept: application/sdp, application/rs-metadata+xml\r\n"
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE\r\n"
        "Supported: timer, replaces\r\n"
        f"Content-Type: multipart/mixed;boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


COMPACT_INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;received=192.0.2.10\r\n"
    b"v: SIP/2.0/TCP proxy.example.com;branch=z9hG4bK77ef4c2312983.1 ,\r\n"
    b" SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK123;rport\r\n"
    b'f: "Alice, A." <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"t: Bob <sip:bob@biloxi.example.com>\r\n"
    b"i: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b'm: <sip:alice@pc33.atlanta.example.com>, "Mobile, x" <sip:alice@mobile.example.com>\r\n'
    b"k: timer\r\n"
    b"Record-Route: <sip:proxy.example.com;lr>\r\n"
    b"l: 0\r\n"
    b"\r\n"
)

OPTIONS_PING = (
    b"OPTIONS sip:192.0.2.5:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-ka-1\r\n"
    b"From: <sip:ping@198.51.100.7>;tag=ka1\r\n"
    b"To: <sip:192.0.2.5:5060>\r\n"
    b"Call-ID: ka-1@198.51.100.7\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
