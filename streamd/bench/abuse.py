"""``streamd bench abuse``: issue 13's SIP/RTP attacks against a daemon while a live call streams.

``streamd run`` runs as a child process (``sources.sip`` on loopback, TCP on, the limits at their
defaults unless said otherwise) with the given model (use a tiny one). For each phase, sipp places
one live call from 127.0.0.1 (the allowed SBC) that streams the clip as PCMU in real time; the
attack runs meanwhile, from 127.0.0.2 (outside ``allow_from``) unless it needs an allowed peer:

  baseline   nothing: the live call's window lag alone
  big        60 KB SIP datagrams (one long Via) from a stranger at --big-rate per second
  invites    --invites small INVITEs from a stranger, as fast as they go
  mlines     one INVITE from the SBC with 500 ``a=inactive`` m-lines
  tcp        --tcp idle TCP connections from a stranger, then one from the SBC
  silence    the live call's sender goes silent for 3 s, nothing else (hijack's control: the
             windows over the silence are scored when the audio resumes, so their lag is long)
  hijack     the live call's sender goes silent for 3 s (sipp's rtp_stream pause) while RTP with
             a foreign SSRC arrives at 50 packets/s on every port of the RTP range, from an
             allowed address other than the call's: does the call keep its own audio?

Per phase: what was tried, the live call's window lag p50/p99 (receipt of ``window.scored`` on
``/v1/events`` minus the end of its audio; windows scored at BYE left out) and frames lost, the
daemon's RSS before and after, the counters that moved and the warning lines it logged. Every
phase is bounded in time. The machine is shared with sipp and the attacker: compare phases of one
run, not runs on different machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from streamd.bench.sipp_harness import (
    SCENARIO,
    SipDaemon,
    g711_clip,
    pct,
    run_sipp,
    wait_until,
    window_lags,
)

STRANGER = "127.0.0.2"
PHASES = ("baseline", "big", "invites", "mlines", "tcp", "silence", "hijack")
RTP_SPAN = 40  # even ports in the bench's RTP range
STREAM = '<nop><action><exec rtp_stream="clip.g711,1,0"/></action></nop>'
SILENCE = (
    f'{STREAM}<pause milliseconds="3000"/>'
    '<nop><action><exec rtp_stream="pause"/></action></nop><pause milliseconds="3000"/>'
    '<nop><action><exec rtp_stream="resume"/></action></nop>'
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "abuse",
        help="SIP/RTP attacks while a live call streams: its lag, RSS, counters, logs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models-dir", required=True, help="models directory (a tiny model)")
    p.add_argument("--model", default=None, help="model name (default: the only one installed)")
    p.add_argument("--seconds", type=float, default=12.0, help="live call length (default 12)")
    p.add_argument("--phases", default=",".join(PHASES), help=f"default {','.join(PHASES)}")
    p.add_argument("--big-rate", type=float, default=50.0, help="60 KB datagrams/s (default 50)")
    p.add_argument("--invites", type=int, default=2500, help="stranger INVITEs (default 2500)")
    p.add_argument("--tcp", type=int, default=100, help="stranger TCP connections (default 100)")
    p.add_argument("--audio", help="speech file the live call streams (default: synthetic)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=run)


def _invite(n: int, pad: int = 0, media: int = 0) -> bytes:
    extra = "".join("m=audio 9 RTP/AVP 0\r\na=inactive\r\n" for _ in range(media))
    body = (
        "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}"
        if media
        else ""
    )
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"INVITE sip:abuse@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKa{n}"
        f"{';x=' + 'p' * pad if pad else ''}\r\n"  # a long Via: the parser's costliest line
        f"From: <sip:a@127.0.0.1>;tag=a{n}\r\nTo: <sip:abuse@127.0.0.1>\r\nCall-ID: abuse-{n}\r\n"
        f"CSeq: 1 INVITE\r\n{ctype}Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def _udp(
    source: str, target: tuple[str, int], datagrams: list[bytes], rate: float, s: float
) -> int:
    """Send ``datagrams`` round-robin at ``rate``/s (0: as fast as they go) for ``s`` seconds."""
    sent, start = 0, time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        while (elapsed := time.monotonic() - start) < s and (rate or sent < len(datagrams)):
            due = int(rate * elapsed) - sent if rate else 1
            for _ in range(max(0, due)):
                with contextlib.suppress(OSError):
                    sock.sendto(datagrams[sent % len(datagrams)], target)
                sent += 1
            time.sleep(0.005 if rate else 0.0005 if sent % 50 == 0 else 0)
    return sent


def _tcp(port: int, n: int, hold: float) -> dict[str, Any]:
    """``n`` idle stranger connections held ``hold`` s; then whether the SBC gets an answer."""
    conns = []
    for _ in range(n):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.bind((STRANGER, 0))
        c.settimeout(2)
        with contextlib.suppress(OSError):
            c.connect(("127.0.0.1", port))
        conns.append(c)
    time.sleep(hold / 2)
    options = _invite(0).replace(b"INVITE", b"OPTIONS").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sbc:
            sbc.sendall(options)
            answer = sbc.recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError as exc:
        answer = f"error: {exc}"
    time.sleep(hold / 2)
    for c in conns:
        c.close()
    return {"sbc_over_tcp": answer}


def _rtp(ports: range, seconds: float) -> int:
    """Foreign-SSRC RTP at 50 packets/s to every port, from 127.0.0.1 (allowed, not the call's)."""
    sent, start = 0, time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while time.monotonic() - start < seconds:
            header = struct.pack("!BBHII", 0x80, 0, sent % 65536, sent * 160, 0xBADBAD)
            for port in ports:
                with contextlib.suppress(OSError):
                    sock.sendto(header + b"\xff" * 160, ("127.0.0.1", port))
            sent += 1
            time.sleep(0.02)
    return sent * len(ports)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _moved(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in ("sip", "rtp"):
        for key, value in after[part].items():
            if isinstance(value, int) and value != before[part].get(key, 0):
                out[f"{part}.{key}"] = value - before[part].get(key, 0)
            elif isinstance(value, dict):
                for k, v in value.items():
                    if v != before[part].get(key, {}).get(k, 0):
                        out[f"{part}.{key}.{k}"] = v - before[part].get(key, {}).get(k, 0)
    return out


async def _attack(phase: str, args: argparse.Namespace, daemon: SipDaemon, low: int) -> Any:
    window = args.seconds - 3
    sip = ("127.0.0.1", daemon.sip)
    if phase == "big":
        sent = await asyncio.to_thread(
            _udp, STRANGER, sip, [_invite(n, 60_000) for n in range(64)], args.big_rate, window
        )
        return {"tried": f"{args.big_rate:.0f}/s x 60 KB datagrams (a 60 KB Via)", "sent": sent}
    if phase == "invites":
        invites = [_invite(n) for n in range(args.invites)]
        sent = await asyncio.to_thread(_udp, STRANGER, sip, invites, 0, window)
        return {"tried": f"{args.invites} stranger INVITEs", "sent": sent}
    if phase == "mlines":
        sent = await asyncio.to_thread(_udp, "127.0.0.1", sip, [_invite(1, 0, 500)], 0, 2)
        return {"tried": "1 INVITE with 501 m-lines from the SBC", "sent": sent}
    if phase == "tcp":
        found = await asyncio.to_thread(_tcp, daemon.sip, args.tcp, window)
        return {"tried": f"{args.tcp} idle stranger TCP connections", **found}
    if phase == "hijack":
        sent = await asyncio.to_thread(_rtp, range(low, low + 2 * RTP_SPAN, 2), window)
        tried = f"3 s of silence; foreign-SSRC RTP, 50/s to each of {RTP_SPAN} ports"
        return {"tried": tried, "sent": sent}
    await asyncio.sleep(window)
    return {"tried": "3 s of silence, no attack" if phase == "silence" else "nothing"}


async def _phase(
    tmp: Path, daemon: SipDaemon, phase: str, args: argparse.Namespace, low: int
) -> dict[str, Any]:
    service = f"live-{phase}"
    quiet = phase in ("silence", "hijack")
    scenario = SCENARIO.replace(STREAM, SILENCE) if quiet else SCENARIO
    (tmp / "bench.xml").write_text(scenario)
    before, rss0 = daemon.status(), _rss_mb(daemon.proc.pid)
    log_at = daemon.log.stat().st_size
    length = args.seconds + (3 if quiet else 0)
    call = asyncio.ensure_future(run_sipp(tmp, daemon, service, 1, length))
    await wait_until(lambda: any(s["started"] for s in daemon.of(service).values()), 20)
    await asyncio.sleep(1.0)
    found = await _attack(phase, args, daemon, low)
    code = await call
    await wait_until(lambda: any(s["summary"] for s in daemon.of(service).values()), 20)
    await asyncio.sleep(0.5)
    after, rss1 = daemon.status(), _rss_mb(daemon.proc.pid)
    streams = daemon.of(service)
    lags = window_lags(streams)
    summary = next(iter(streams.values()))["summary"] or {} if streams else {}
    with open(daemon.log, "rb") as f:
        f.seek(log_at)
        lines = [ln.decode(errors="replace").strip() for ln in f.read().splitlines()]
    warnings = [ln.split(": ", 1)[-1][:140] for ln in lines if "WARNING" in ln]
    return {
        "phase": phase,
        **found,
        "sipp_exit": code,
        "live_lag_p50_s": pct(lags, 50),
        "live_lag_p99_s": pct(lags, 99),
        "live_windows": len(lags),
        "live_frames_lost": summary.get("frames_lost"),
        "live_duration_s": summary.get("duration_s"),
        "rss_mb_before": rss0,
        "rss_mb_after": rss1,
        "counted": _moved(before, after),
        "rtp_ports_in_use": after["rtp_ports_in_use"],
        "warnings_logged": len(warnings),
        "warning_sample": warnings[:2],
    }


class AbuseDaemon(SipDaemon):
    """The bench daemon with TCP on and the limits this bench exercises."""

    def __init__(self, tmp: Path, args: argparse.Namespace, rtp_ports: tuple[int, int]) -> None:
        import yaml

        super().__init__(tmp, args, rtp_ports, 20)
        cfg = yaml.safe_load(self.config.read_text())
        cfg["sources"]["sip"].update({"tcp": True, "allow_from": ["127.0.0.1/32"]})
        self.config.write_text(yaml.safe_dump(cfg))


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"streamd bench abuse: unknown phases {sorted(unknown)}")
    results: dict[str, Any] = {"phases": [], "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "clip.g711").write_bytes(g711_clip(args.audio, args.seconds))
        low = 20000 + 2 * (os.getpid() % 5000)
        async with AbuseDaemon(tmp, args, (low, low + 2 * RTP_SPAN - 2)) as daemon:
            for phase in phases:
                row = await _phase(tmp, daemon, phase, args, low)
                results["phases"].append(row)
                if not args.json:
                    print("  " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return results


def run(args: argparse.Namespace) -> int:
    import shutil

    if shutil.which("sipp") is None:
        print(
            "streamd bench abuse: needs sipp (Debian: apt-get install sip-tester)", file=sys.stderr
        )
        return 2
    results = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(results))
    else:
        base = next((r for r in results["phases"] if r["phase"] == "baseline"), None)
        for r in results["phases"]:
            ref = f" (baseline {base['live_lag_p99_s']})" if base and r is not base else ""
            print(
                f"{r['phase']:>8}: {r['tried']}: live p99 lag {r['live_lag_p99_s']} s{ref}, "
                f"frames lost {r['live_frames_lost']}, RSS {r['rss_mb_before']} -> "
                f"{r['rss_mb_after']} MB"
            )
    return 0
