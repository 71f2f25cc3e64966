"""Block decoding: ``streamd score`` on an hour of audio holds what it holds on a minute.

The file is written block by block (never a whole hour in this process either), then scored in a
subprocess whose peak RSS (``ru_maxrss`` of the child) is compared with the same command on one
minute of the same audio. Before block decoding and backpressure, the hour cost the decoded file
(float32, 16 kHz: 230 MB) plus every window queued ahead of the scorer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.slow

RATE = 8000


def write_long(path: Path, speech_16k: np.ndarray, seconds: int) -> Path:
    """Speech at 8 kHz (a phone call's rate), repeated to ``seconds``, written in blocks."""
    piece = speech_16k[::2]
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:
        left = seconds * RATE
        while left > 0:
            block = piece[: min(left, len(piece))]
            f.write(block)
            left -= len(block)
    return path


def peak_rss_mb(args: list[str], tmp: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Peak RSS of this one child, from its own rusage (``wait4``), not of every child so far."""
    out, err = tmp / "out.txt", tmp / "err.txt"
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamd", *args],
            stdout=fo,
            stderr=fe,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        killer = threading.Timer(900, proc.kill)  # bounded: a hung run fails, not hangs
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    done = subprocess.CompletedProcess(args, proc.returncode, out.read_text(), err.read_text())
    return usage.ru_maxrss / 1024, done


def test_an_hour_costs_what_a_minute_does(
    tiny_model_dir: Path, speech_16k: np.ndarray, tmp_path: Path
) -> None:
    hour = write_long(tmp_path / "hour.wav", speech_16k, 3600)
    minute = write_long(tmp_path / "minute.wav", speech_16k, 60)
    common = ["score", "--json", "--hop", "4", "--models-dir", str(tiny_model_dir)]
    rss_minute, r1 = peak_rss_mb([*common, str(minute)], tmp_path)
    assert r1.returncode == 0, r1.stderr
    rss_hour, r2 = peak_rss_mb([*common, str(hour)], tmp_path)
    assert r2.returncode == 0, r2.stderr
    last = json.loads(r2.stdout.splitlines()[-1])
    print(
        f"\nstreamd score peak RSS: 1 min {rss_minute:.0f} MB, 1 h {rss_hour:.0f} MB "
        f"({hour.stat().st_size / 1e6:.0f} MB WAV, {last['windows']} windows)"
    )
    assert last["duration_s"] == pytest.approx(3600, abs=0.1)
    assert last["windows"] > 800  # the whole hour was scored, not a prefix
    # the decoded hour alone would be 115 MB (8 kHz) + 230 MB (16 kHz) of float32
    assert rss_hour < rss_minute + 80, (rss_minute, rss_hour)
