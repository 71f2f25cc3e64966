"""``streamd eval`` end to end on a small labelled subset of ../shared/data, and its data
loading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from streamd.errors import UsageError
from streamd.offline.datasets import load_labeled
from streamd.offline.eval import ClipResult, summarize

from tests.helpers.common import write_wav


def test_csv_and_folders(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "f").mkdir()
    write_wav(tmp_path / "r" / "a.wav", np.zeros(100, np.float32), 16000)
    write_wav(tmp_path / "f" / "b.wav", np.zeros(100, np.float32), 16000)
    (tmp_path / "m.csv").write_text(
        "path,label,system,speaker\nr/a.wav,bonafide,human,s1\nf/b.wav,spoof,tts,s2\n"
    )
    a = load_labeled([str(tmp_path / "m.csv")])
    assert [(c.label, c.system, c.group, c.path.exists()) for c in a] == [
        ("real", "human", "s1", True),
        ("fake", "tts", "s2", True),
    ]
    b = load_labeled(real=[str(tmp_path / "r")], fake=[str(tmp_path / "f")])
    assert [c.label for c in b] == ["real", "fake"]
    (tmp_path / "bad.csv").write_text("path,label\nx.wav,maybe\n")
    with pytest.raises(UsageError, match="neither real"):
        load_labeled([str(tmp_path / "bad.csv")])
    with pytest.raises(UsageError, match="needs --real or --fake"):
        load_labeled([str(tmp_path / "r")])


def test_summary_uses_clip_means_and_per_system(tmp_path: Path) -> None:
    from streamd.offline.datasets import LabeledClip

    def r(label: str, system: str, wins: list[float]) -> ClipResult:
        return ClipResult(
            LabeledClip(tmp_path / f"{system}{len(wins)}.wav", label, system, source=system),
            windows=wins,
        )

    results = [
        r("real", "human", [0.1, 0.3]),
        r("real", "human", [0.2]),
        r("fake", "tts", [0.9, 0.7]),
        r("fake", "vc", [0.15, 0.15]),
    ]
    s = summarize(results, threshold=0.5, far=0.0)
    assert s["window"]["n"] == 7 and s["clip"]["n"] == 4
    assert (
        s["per_system"]["tts"]["eer"] == 0.0 and s["per_system"]["vc"]["eer"] == 1.0
    )  # clip means: reals 0.2, 0.2 > 0.15
    assert s["clip"]["confusion"]["tp"] == 1 and s["clip"]["confusion"]["fn"] == 1
    assert s["clip"]["at_far"]["detection_rate"] == 0.5


def test_eval_cli_on_shared_subset(tiny_model_dir: Path, shared_dir: Path, tmp_path: Path) -> None:
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models)
    cmd = [
        sys.executable,
        "-m",
        "streamd",
        "eval",
        str(shared_dir / "data" / "manifest.csv"),
        "--limit",
        "6",
        "--models-dir",
        str(models),
        "--json",
        "--short-clips",
        "score",
        "--write-metrics",
        "dev-subset",
    ]
    report = tmp_path / "report"
    r = subprocess.run([*cmd, "--report", str(report)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
    # the report says what --json says, and lists every clip
    assert len(out["per_clip"]) == 12
    on_page = json.loads((report / "report.json").read_text())
    assert on_page["clip"] == out["clip"] and on_page["per_clip"] == out["per_clip"]
    assert (report / "index.html").is_file() and (report / "det_roc_overall.png").is_file()
    assert out["clips"] == 12 and out["clip"]["n_real"] == 6 and out["clip"]["n_fake"] == 6
    assert 0.0 <= out["clip"]["eer"] <= 1.0 and 0.0 <= out["clip"]["auc"] <= 1.0
    assert out["window"]["n"] >= out["clip"]["n"] - out["scored_whole"]
    manifest = yaml.safe_load((models / "tiny.yaml").read_text())
    assert manifest["metrics"]["eval"]["dev-subset"]["clip"]["n"] == 12
    r2 = subprocess.run(
        [*cmd[:5], "--limit", "6", "--models-dir", str(models), "--telephony"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r2.returncode == 0 and "condition: G.711 ulaw" in r2.stdout, r2.stderr


def streamd_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamd", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("far", ["2", "0", "-0.1", "1", "x"])
def test_far_outside_0_1_is_a_usage_error_before_any_scoring(far: str, tmp_path: Path) -> None:
    r = streamd_cli("eval", "--real", str(tmp_path), "--far", far, "--models-dir", str(tmp_path))
    assert r.returncode == 2 and "--far" in r.stderr, r.stderr
    assert "model" not in r.stderr.lower().split("--far")[-1]  # failed on --far, not later


def test_set_threshold_from_too_few_real_clips_is_refused(tmp_path: Path) -> None:
    for name in ("r1", "r2", "f1", "f2"):
        write_wav(tmp_path / f"{name}.wav", np.zeros(1600, np.float32), 16000)
    (tmp_path / "m.csv").write_text(
        "path,label\nr1.wav,real\nr2.wav,real\nf1.wav,fake\nf2.wav,fake\n"
    )
    args = ["eval", str(tmp_path / "m.csv"), "--models-dir", str(tmp_path / "none")]
    r = streamd_cli(*args, "--write-metrics", "k", "--set-threshold")
    assert r.returncode == 2, r.stderr
    assert "2 real clips are too few" in r.stderr and "at least 300" in r.stderr
    assert "--force" in r.stderr
    r = streamd_cli(*args, "--write-metrics", "k", "--set-threshold", "--far", "0.1")
    assert "at least 50" in r.stderr
    r = streamd_cli(*args, "--set-threshold")
    assert r.returncode == 2 and "--write-metrics" in r.stderr
