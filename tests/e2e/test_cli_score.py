"""``streamd score`` and ``streamd run`` with files, through the real CLI in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamd.events.schema import validate_event

from tests.helpers.common import write_wav


def streamd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamd", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, speech_16k: np.ndarray) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    out = {
        "speech": write_wav(d / "speech.wav", speech_16k[: 16000 * 9], 16000),
        "speech_8k_stereo": write_wav(
            d / "speech8.wav", np.stack([speech_16k[: 16000 * 9 : 2]] * 2, axis=1), 8000
        ),
        "silence": write_wav(d / "silence.wav", np.zeros(16000 * 5, np.float32), 16000),
        "short": write_wav(
            d / "short.wav",
            np.concatenate([speech_16k[16000 : 32000 + 8000], np.zeros(16000)]),
            16000,
        ),
        "noise_floor": write_wav(
            d / "hiss.wav", (1e-4 * rng.standard_normal(16000 * 4)).astype(np.float32), 16000
        ),
    }
    (d / "empty.wav").write_bytes(b"")
    (d / "notaudio.wav").write_text("this is text\n" * 100)
    flac = d / "real.flac"
    import soundfile as sf

    sf.write(flac, speech_16k[:48000], 16000)
    (d / "corrupt.flac").write_bytes(
        flac.read_bytes()[:200] + bytes(rng.integers(0, 255, 5000, dtype=np.uint8))
    )
    out.update(
        {
            "empty": d / "empty.wav",
            "notaudio": d / "notaudio.wav",
            "corrupt": d / "corrupt.flac",
            "dir": d,
        }
    )
    return out


def test_score_prints_windows_and_verdict(tiny_model_dir: Path, clips: dict[str, Path]) -> None:
    r = streamd("score", "--models-dir", str(tiny_model_dir), str(clips["speech"]))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    windows = [ln for ln in lines if "p_fake=" in ln]
    assert len(windows) >= 4
    assert "0.00-   4.00 s" in windows[0]
    assert any("verdict: REAL" in ln or "verdict: FAKE" in ln for ln in lines)


def test_score_json_and_rates_agree(tiny_model_dir: Path, clips: dict[str, Path]) -> None:
    r = streamd(
        "score",
        "--json",
        "--models-dir",
        str(tiny_model_dir),
        str(clips["speech"]),
        str(clips["speech_8k_stereo"]),
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    verdicts = [x for x in rows if "verdict" in x]
    assert [v["file"] for v in verdicts] == [str(clips["speech"]), str(clips["speech_8k_stereo"])]
    for v in verdicts:
        assert v["verdict"] in ("real", "fake") and v["windows"] >= 3 and 0 <= v["max_score"] <= 1
    per_window = [x for x in rows if "p_fake" in x]
    assert all(x["end_s"] - x["start_s"] >= 2.5 for x in per_window)


def test_no_speech_and_not_enough_speech(tiny_model_dir: Path, clips: dict[str, Path]) -> None:
    r = streamd(
        "score", "--models-dir", str(tiny_model_dir), str(clips["silence"]), str(clips["short"])
    )
    assert r.returncode == 0, r.stderr
    assert "no speech detected" in r.stdout
    assert "not enough speech" in r.stdout


@pytest.mark.parametrize("kind", ["empty", "notaudio", "corrupt", "dir"])
def test_bad_input_is_one_line_and_exit_2(
    tiny_model_dir: Path, clips: dict[str, Path], kind: str
) -> None:
    r = streamd("score", "--models-dir", str(tiny_model_dir), str(clips[kind]))
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr


def test_no_model_installed_uses_the_built_in_and_a_wrong_name_says_how_to_get_one(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    r = streamd("score", str(clips["speech"]), "--models-dir", str(tmp_path))
    assert r.returncode == 0 and "model phone-aasist5-lr" in r.stdout, r.stderr
    for cmd in (["score", str(clips["speech"])], ["run"]):
        r = streamd(*cmd, "--models-dir", str(tmp_path), "--model", "nosuch")
        assert r.returncode == 2 and "streamd models" in r.stderr and "Traceback" not in r.stderr


def test_run_plays_files_as_streams(
    tiny_model_dir: Path, clips: dict[str, Path], tmp_path: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "server: {enabled: false}\n"
        f"sources: {{files: ['{clips['speech']}', '{clips['speech_8k_stereo']}', "
        f"'{clips['notaudio']}'], as_fast_as_possible: true, exit_when_done: true}}\n"
        f"model: {{dir: '{tiny_model_dir}'}}\n"
        f"store: {{path: '{tmp_path / 'events.db'}'}}\n"
    )
    r = streamd("run", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    events = [json.loads(x) for x in r.stdout.splitlines()]
    for e in events:
        validate_event(e)
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    by_type: dict[str, int] = {}
    for e in events:
        by_type[e["type"]] = by_type.get(e["type"], 0) + 1
    assert (
        by_type["stream.started"] == 2
        and by_type["stream.ended"] == 2
        and by_type["window.scored"] >= 6
    )
    assert "notaudio.wav" in r.stderr  # the bad file is logged, the daemon carried on
