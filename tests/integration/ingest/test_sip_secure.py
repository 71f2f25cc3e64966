"""Secure SIP transports against a real daemon on 127.0.0.1 (issue 13 item 8): a call over SIP
over TLS (Python ``ssl``) with a SHA-256 digest challenge and SRTP media (SDES keys, packets
protected by pylibsrtp) is scored exactly as its clean audio; a stranger's TLS connection is
closed before any handshake; plain RTP is refused when SRTP is required; and sipp's
``[authentication]`` answers an MD5 challenge."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from streamd.protocols.sip.digest import digest_response, parse_credentials
from streamd.protocols.sip.message import SipResponse, SipStreamFramer, parse_message
from streamd.protocols.sip.sdes import parse_crypto
from streamd.protocols.sip.sdp import parse_sdp

from tests.helpers.feeds import assert_same_windows, of, reference, windows
from tests.helpers.sip import g711_speech, rtp_packets, run_sipp, sip_daemon

pylibsrtp = pytest.importorskip("pylibsrtp")
pytestmark = pytest.mark.slow

KEY = bytes(range(1, 31))
USERS = {"sbc": "s3cret"}


def self_signed(tmp: Path) -> tuple[str, str]:
    """A certificate for IP 127.0.0.1 and its key, as PEM files."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streamd-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "sip.crt", tmp / "sip.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


class TlsUac:
    """A SIP client over one TLS connection: writes requests, reads framed messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.port = int(writer.get_extra_info("sockname")[1])
        self.framer = SipStreamFramer()
        self.frames: list[bytes] = []

    @classmethod
    async def open(cls, port: int, cafile: str) -> TlsUac:
        context = ssl.create_default_context(cafile=cafile)
        return cls(*await asyncio.open_connection("127.0.0.1", port, ssl=context))

    def send(self, method: str, cseq: int, branch: str, *, to_tag: str = "", extra: str = "",
             body: str = "") -> None:  # fmt: skip
        to = "<sips:service@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        self.writer.write(
            (
                f"{method} sips:service@127.0.0.1 SIP/2.0\r\n"
                f"Via: SIP/2.0/TLS 127.0.0.1:{self.port};branch={branch}\r\n"
                f"From: <sips:sbc@127.0.0.1>;tag=tls1\r\nTo: {to}\r\nCall-ID: tls-call\r\n"
                f"CSeq: {cseq} {method}\r\nContact: <sips:sbc@127.0.0.1:{self.port}>\r\n"
                f"Max-Forwards: 70\r\n{extra}{ctype}Content-Length: {len(body)}\r\n\r\n{body}"
            ).encode()
        )

    async def final(self, method: str) -> SipResponse:
        """The next final response (provisional ones skipped); it must answer ``method``."""
        while True:
            while not self.frames:
                self.frames.extend(
                    self.framer.feed(await asyncio.wait_for(self.reader.read(65536), 10))
                )
            message = parse_message(self.frames.pop(0))
            if isinstance(message, SipResponse) and message.status >= 200:
                assert message.cseq[1] == method, message.start_line()
                return message


def srtp_offer(rtp_port: int, proto: str = "RTP/SAVP") -> str:
    inline = base64.b64encode(KEY).decode()
    return (
        "v=0\r\no=uac 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}|2^31\r\n"
    )


def protector(key: bytes) -> Any:
    policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    return pylibsrtp.Session(policy)


async def test_tls_digest_sha256_and_srtp_call(tiny_model_dir: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    cfg = {"tls_port": 0, "tls_cert": cert, "tls_key": key, "srtp": "required",
           "auth_users": USERS}  # fmt: skip
    coded, pcm, _ = g711_speech(6.0, "PCMU", offset=4)
    async with sip_daemon(tiny_model_dir, tmp_path, **cfg) as (daemon, events, sip):
        # a stranger's TLS connection is closed at accept: no handshake, nothing parsed
        def stranger_handshake() -> None:  # blocking: in a thread, the daemon is on this loop
            with socket.create_connection(
                ("127.0.0.1", sip.tls_port), timeout=5, source_address=("127.0.0.2", 0)
            ) as raw:
                context = ssl.create_default_context(cafile=cert)
                context.wrap_socket(raw, server_hostname="127.0.0.1").close()

        with pytest.raises((ssl.SSLError, OSError)):
            await asyncio.to_thread(stranger_handshake)

        uac = await TlsUac.open(sip.tls_port, cert)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp:
            rtp.bind(("127.0.0.1", 0))
            uac.send("INVITE", 1, "z9hG4bKplain", body=srtp_offer(rtp.getsockname()[1], "RTP/AVP"))
            assert (await uac.final("INVITE")).status == 401  # auth comes before the offer
            uac.send("ACK", 1, "z9hG4bKplain")
            offer = srtp_offer(rtp.getsockname()[1])
            uac.send("INVITE", 2, "z9hG4bKtls1", body=offer)
            challenge = await uac.final("INVITE")
            assert challenge.status == 401
            uac.send("ACK", 2, "z9hG4bKtls1")
            www = challenge.headers.get_all("WWW-Authenticate")
            assert "algorithm=SHA-256" in www[0] and "algorithm=MD5" in www[1]
            p = parse_credentials(www[0])
            response = digest_response("SHA-256", username="sbc", realm=p["realm"],
                                       password="s3cret", method="INVITE",
                                       uri="sips:service@127.0.0.1", nonce=p["nonce"],
                                       nc="00000001", cnonce="c1")  # fmt: skip
            auth = (
                f'Authorization: Digest username="sbc", realm="{p["realm"]}", '
                f'nonce="{p["nonce"]}", uri="sips:service@127.0.0.1", response="{response}", '
                'algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c1"\r\n'
            )
            uac.send("INVITE", 3, "z9hG4bKtls2", body=offer, extra=auth)
            ok = await uac.final("INVITE")
            assert ok.status == 200, ok.start_line()
            assert "sips:" in (ok.headers.get("Contact") or "")
            uac.send("ACK", 3, "z9hG4bKtls3", to_tag=ok.to_tag or "")
            (media,) = parse_sdp(ok.body).media
            assert media.proto == "RTP/SAVP"
            ours = parse_crypto(media.attribute("crypto") or "")
            assert ours.key_salt != KEY
            good, wrong = protector(KEY), protector(bytes(30))
            start = time.monotonic()
            for i, packet in enumerate(rtp_packets(coded, 0)):
                rtp.sendto(good.protect(packet), ("127.0.0.1", media.port))
                if i % 30 == 0:  # a forger without the key, from the same address
                    rtp.sendto(wrong.protect(packet), ("127.0.0.1", media.port))
                delay = start + (i + 1) * 0.02 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            uac.send("BYE", 4, "z9hG4bKtls4", to_tag=ok.to_tag or "")
            assert (await uac.final("BYE")).status == 200
        uac.writer.close()
        await events.wait_for(lambda ev: bool(of(ev, "stream.ended")), 20)
        ref = await reference(daemon, {"clean": (pcm, 8000)})
        status = sip.status()
    (end,) = of(events.events, "stream.ended")
    assert_same_windows(windows(events.events, end["stream"]["stream_id"]), ref["clean"])
    assert end["summary"]["frames_lost"] == 0
    s, rtp_counts = status["sip"], status["rtp"]
    assert s["tcp_refused_source"] == 1 and s["auth_challenges"] == 2 and s["auth_failures"] == 0
    assert rtp_counts["srtp_failed"] == 10 and rtp_counts["packets"] == 300


async def test_plain_rtp_is_refused_when_srtp_is_required(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from tests.helpers.sip import Uac, offer

    async with sip_daemon(tiny_model_dir, tmp_path, srtp="required") as (_, _events, sip):
        uac = await Uac.open(sip.port)
        assert (await uac.call("plain", offer(6000))).status == 488
        uac.close()
        assert sip.status()["rtp_ports_in_use"] == 0


async def test_sipp_answers_an_md5_challenge(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = {"auth_users": USERS, "auth_algorithms": ["MD5"]}
    async with sip_daemon(tiny_model_dir, tmp_path, **cfg) as (_, events, sip):
        code, out = await run_sipp(tmp_path, sip.port, "-m", "1", "-t", "t1",
                                   scenario="uac_auth.xml", timeout=20)  # fmt: skip
        assert code == 0, out
        await events.wait_for(lambda ev: bool(of(ev, "stream.ended")), 20)
        s = sip.status()["sip"]
    assert s["auth_challenges"] == 1 and s["auth_failures"] == 0 and s["calls"] == 1
