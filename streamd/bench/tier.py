"""``streamd bench tier``: CPU cost per stream on an ingest node and per window on a Triton node.

Runs a real daemon (``streamd run`` in a subprocess) with ``--streams`` file sources in real time,
once with onnxruntime in-process and once with ``model.backend: triton`` against ``--server``,
and reads CPU time from /proc (user + system of the daemon, and of ``--server-pid``'s process
group: PyTriton, tritonserver and its stubs). CPU seconds, not wall time, so the figures hold
on a machine shared with other work (contention still inflates them a little).
  ingest      daemon CPU s per stream-second, local and remote: the sizing rule's ingest side
  inference   server CPU s per window, and windows per Triton execution
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

TICK = os.sysconf("SC_CLK_TCK")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tier",
        help="CPU per stream on an ingest node (local vs Triton) and per window on the tier",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True)
    p.add_argument("--models-dir", default="models", metavar="DIR")
    p.add_argument("--audio", required=True, help="a speech file each stream plays (real time)")
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--server", default="127.0.0.1:8001", help="Triton gRPC host:port")
    p.add_argument("--metrics-url", default="http://127.0.0.1:8002/metrics")
    p.add_argument("--server-pid", type=int, help="serve-model's pid (its process group is read)")
    p.add_argument("--timeout", type=float, default=300.0, help="bound on each daemon run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a running process (the tier's processes are not our children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def group_cpu(pgid: int) -> float:
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid:
                    total += cpu_seconds(int(d.name))
            except OSError:
                continue
    return total


def counters(url: str, model: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for key in ("nv_inference_request_success", "nv_inference_exec_count", "nv_inference_count"):
        m = re.search(rf'^{key}{{model="{re.escape(model)}",version="1"}} (\S+)$', text, re.M)
        out[key] = float(m.group(1)) if m else 0.0
    return out


def run_daemon(
    args: argparse.Namespace, model: dict[str, Any], tmp: Path, streams: int
) -> dict[str, float]:
    cfg = {
        "server": {"enabled": False},
        "sources": {
            "files": [str(Path(args.audio).resolve())] * streams,
            "exit_when_done": True,
            "webrtc": {"enabled": False},
        },
        "model": {"dir": str(Path(args.models_dir).resolve()), "name": args.model, **model},
        "store": {"path": str(tmp / f"e{time.monotonic_ns()}.db")},
        "logging": {"level": "warning"},
    }
    path = tmp / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamd", "run", "-c", str(path)], stdout=subprocess.DEVNULL
    )
    usage = None
    while usage is None and time.perf_counter() - t0 < args.timeout:
        pid, _, ru = os.wait4(proc.pid, os.WNOHANG)  # rusage: exact CPU of the whole run
        if pid:
            usage = ru
            proc.returncode = 0
        else:
            time.sleep(0.2)
    if usage is None:
        proc.kill()
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = -9
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": time.perf_counter() - t0, "cpu_s": cpu}


def run(args: argparse.Namespace) -> int:
    import soundfile as sf

    seconds = sf.info(args.audio).duration
    extra_s = seconds * (args.streams - 1)
    if extra_s <= 0:
        print("streamd bench tier: --streams must be at least 2")
        return 2
    out: dict[str, Any] = {"streams": args.streams, "audio_s": round(seconds, 1)}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # Marginal cost: N streams minus 1 stream, so start-up (imports, model load) drops out.
        local = {n: run_daemon(args, {"providers": ["cpu"]}, tmp, n) for n in (1, args.streams)}
        out["local_cpu_per_stream_s"] = round(
            (local[args.streams]["cpu_s"] - local[1]["cpu_s"]) / extra_s, 4
        )
        remote_cfg = {"backend": "triton", "triton": {"servers": [args.server]}}
        run_daemon(args, remote_cfg, tmp, 1)  # warm: the first requests set Triton up
        before = counters(args.metrics_url, args.model)
        server0 = group_cpu(os.getpgid(args.server_pid)) if args.server_pid else 0.0
        remote = {n: run_daemon(args, remote_cfg, tmp, n) for n in (1, args.streams)}
        server1 = group_cpu(os.getpgid(args.server_pid)) if args.server_pid else 0.0
        after = counters(args.metrics_url, args.model)
    out["remote_cpu_per_stream_s"] = round(
        (remote[args.streams]["cpu_s"] - remote[1]["cpu_s"]) / extra_s, 4
    )
    windows = after["nv_inference_count"] - before["nv_inference_count"]
    execs = max(after["nv_inference_exec_count"] - before["nv_inference_exec_count"], 1.0)
    out["windows"] = int(windows)
    out["windows_per_exec"] = round(windows / execs, 2)
    if args.server_pid and windows:
        out["server_cpu_ms_per_window"] = round((server1 - server0) / windows * 1e3, 2)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{args.streams} streams of {seconds:.1f} s in real time, model {args.model}:")
    print(
        f"  ingest node, onnxruntime in-process: {out['local_cpu_per_stream_s'] * 1e3:.1f} ms CPU "
        f"per stream-second -> {1 / max(out['local_cpu_per_stream_s'], 1e-9):.0f} streams per core"
    )
    print(
        f"  ingest node, model on Triton:        {out['remote_cpu_per_stream_s'] * 1e3:.1f} ms CPU "
        f"per stream-second -> {1 / max(out['remote_cpu_per_stream_s'], 1e-9):.0f} streams per core"
    )
    if "server_cpu_ms_per_window" in out:
        print(
            f"  Triton node: {out['server_cpu_ms_per_window']} ms CPU per window, "
            f"{out['windows_per_exec']} windows per execution ({out['windows']} windows)"
        )
    return 0
