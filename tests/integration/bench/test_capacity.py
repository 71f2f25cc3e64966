"""``streamd bench capacity`` end to end on a tiny model: live streams, a search, JSON out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamd.cli import main

from tests.helpers.common import write_wav

pytestmark = pytest.mark.slow  # real-time trials of several seconds each


def speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    phase = 2 * np.pi * np.cumsum(130 + 40 * np.sin(2 * np.pi * 1.7 * t)) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 3.1 * t)
    return (0.3 * env * voiced + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


def test_capacity_json_on_a_tiny_model(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = write_wav(tmp_path / "talk.wav", speechlike(12.0, 1), 16000)
    rc = main(
        [
            "bench", "capacity", "--models-dir", str(tiny_model_dir), "--model", "tiny",
            "--audio", str(audio), "--path", "today", "--path", "two:model.workers=2",
            "--trial-s", "7", "--start", "2", "--max-streams", "4", "--bound", "3",
            "--max-seconds", "60", "--json",
        ]
    )  # fmt: skip
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["provider"] == "cpu" and out["path"] == "two"
    assert {p["path"] for p in out["paths"]} == {"today", "two"}
    for p in out["paths"]:
        assert p["trials"], "every path ran at least one trial"
        for t in p["trials"]:
            assert t["windows"] > 0 or not t["passed"]
            if t["passed"]:
                assert t["p99_s"] <= 3 and t["unscored"] == 0
    assert out["streams"] >= 1  # a tiny model keeps up with a couple of streams


def test_capacity_without_speech_skips_cleanly(
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("streamd.bench.capacity.find_shared", lambda _explicit: None)
    rc = main(["bench", "capacity", "--models-dir", str(tiny_model_dir), "--model", "tiny"])
    assert rc == 0
    assert "no speech" in capsys.readouterr().out


def test_capacity_over_two_processes(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio = write_wav(tmp_path / "talk.wav", speechlike(12.0, 2), 16000)
    rc = main(
        [
            "bench", "capacity", "--models-dir", str(tiny_model_dir), "--model", "tiny",
            "--audio", str(audio), "--path", "today", "--processes", "2", "--trial-s", "7",
            "--start", "2", "--max-streams", "2", "--bound", "3", "--max-seconds", "60", "--json",
        ]
    )  # fmt: skip
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (trial,) = out["paths"][0]["trials"]  # N=2 at once is the cap: one trial, one stream each
    assert trial["streams"] == 2 and trial["windows"] >= 2
    assert trial["passed"] and out["streams"] == 2
