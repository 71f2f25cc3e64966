"""The file source: block decoding gives the same windows as whole-file playing; a missing file
is a config error at start."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from streamd.app.daemon import Daemon
from streamd.config import parse_config
from streamd.errors import AudioError, ConfigError
from streamd.ingest.files import AudioFile
from streamd.model.manifest import resolve_manifest
from streamd.model.session import Detector
from streamd.offline.score import score_clips_async, score_files_async

from tests.helpers.common import write_wav
from tests.helpers.webrtc import daemon_config


async def test_blocks_score_like_the_whole_file(
    tiny_model_dir: Path, speech_16k: np.ndarray, tmp_path: Path
) -> None:
    audio = speech_16k[: 12 * 16000]
    stereo8k = np.stack([audio[::2], audio[::2]], axis=1)
    path = write_wav(tmp_path / "call.wav", stereo8k, 8000)
    cfg = parse_config({"model": {"dir": str(tiny_model_dir)}}, "test", environ={})
    det = Detector.load(resolve_manifest(tiny_model_dir, "tiny"), ["cpu"])
    [from_blocks] = await score_files_async([str(path)], cfg, det)
    import soundfile as sf

    data, rate = sf.read(path, dtype="float32", always_2d=True)
    [whole] = await score_clips_async([("whole", data, rate)], cfg, det)
    assert len(from_blocks.windows) >= 5
    assert [w["window"] for w in from_blocks.windows] == [w["window"] for w in whole.windows]
    np.testing.assert_allclose(
        [w["score"] for w in from_blocks.windows], [w["score"] for w in whole.windows], atol=1e-5
    )
    assert from_blocks.summary["duration_s"] == pytest.approx(12.0, abs=0.01)


def test_audio_file_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio\n" * 50)
    for name, why in (
        ("nope.wav", "no such file"),
        ("empty.wav", "empty file"),
        ("text.wav", "not a readable audio file"),
        (".", "is a directory"),
    ):
        with pytest.raises(AudioError, match=why):
            AudioFile(tmp_path / name)
    f = AudioFile(write_wav(tmp_path / "a.wav", np.zeros(16000 * 3, np.float32), 16000))
    blocks = list(f.blocks(1.0))
    f.close()
    assert [b.shape for b in blocks] == [(16000, 1)] * 3


async def test_a_missing_file_in_sources_files_fails_the_start(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    there = write_wav(tmp_path / "there.wav", np.zeros(1600, np.float32), 16000)
    cfg = daemon_config(
        tiny_model_dir,
        tmp_path / "e.db",
        sources={"files": [str(there), str(tmp_path / "gone.wav")]},
    )
    # run() (what streamd run does) fails, and logs why first, then the clean-up
    caplog.set_level(logging.INFO, logger="streamd")
    with pytest.raises(ConfigError, match=r"sources.files: .*gone.wav: no such file"):
        await Daemon(cfg).run()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("streamd")]
    failed = next(i for i, m in enumerate(messages) if m.startswith("start failed: sources.files"))
    stopping = next(i for i, m in enumerate(messages) if m.startswith("stopping"))
    assert failed < stopping and "start failed" in messages[stopping]
