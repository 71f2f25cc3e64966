"""The built-in default detector: shipped in the package, used when nothing is installed,
overridden by a model in model.dir, listed and shown by ``streamd models``, and silent on tones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from streamd.cli import main
from streamd.model.manifest import load_manifest, resolve_manifest
from streamd.model.shipped import DEFAULT_BUILTIN, builtin_manifest

pytestmark = pytest.mark.skipif(
    builtin_manifest() is None, reason="built-in model files not present"
)


def test_default_is_used_when_no_model_is_installed(tmp_path: Path) -> None:
    assert resolve_manifest(tmp_path / "empty", None) == builtin_manifest()
    assert resolve_manifest(tmp_path, DEFAULT_BUILTIN) == builtin_manifest()


def test_a_model_in_model_dir_overrides_it(tmp_path: Path) -> None:
    src = builtin_manifest()
    assert src is not None
    m = yaml.safe_load(src.read_text())
    shutil.copyfile(src.parent / m["onnx"], tmp_path / "mine.onnx")
    m.update(name="mine", onnx="mine.onnx")
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(m))
    assert resolve_manifest(tmp_path, None) == tmp_path / "mine.yaml"
    assert resolve_manifest(tmp_path, DEFAULT_BUILTIN) == src  # still reachable by name


def test_manifest_is_a_model_card() -> None:
    m = load_manifest(builtin_manifest())  # type: ignore[arg-type]
    card = m.model_extra["card"]  # type: ignore[index]
    assert card["recipe"]["name"] == DEFAULT_BUILTIN
    sources = {s["source"]: s for s in card["training_sources"]}
    assert len(sources) >= 20 and all(s["license"] for s in sources.values())
    assert sources["ttsds__ttsdb"].get("license_note") == "no license file"
    assert m.metrics["loso"]["clip_eer"] is not None
    assert 0 < m.threshold < 1
    onnx = builtin_manifest().parent / m.onnx  # type: ignore[union-attr]
    assert onnx.stat().st_size < 5_000_000


def test_models_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--models-dir", str(tmp_path)]) == 0
    assert f"{DEFAULT_BUILTIN} [built-in, default]" in capsys.readouterr().out
    assert main(["models", "show", "--json", "--models-dir", str(tmp_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == DEFAULT_BUILTIN and Path(shown["onnx_path"]).is_absolute()
    assert Path(shown["onnx_path"]).exists()
    assert main(["models", "show", DEFAULT_BUILTIN, "--models-dir", str(tmp_path)]) == 0
    assert "onnx_path:" in capsys.readouterr().out


def test_builtin_scores_and_tones_never_alert(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import asyncio

    from streamd.app.daemon import load_detector
    from streamd.config import Config
    from streamd.export.probe_audio import speechlike
    from streamd.offline.score import score_clips_async

    from tests.helpers.call_signals import signals

    cfg = Config()
    cfg.model.dir = str(tmp_path)
    det = load_detector(cfg)
    assert det.name == DEFAULT_BUILTIN
    p, _ = det.score_windows([speechlike(64000, 0)])
    assert np.isfinite(p).all() and 0 <= p[0] <= 1
    items = [(k, x, 16000) for k, x in signals(20.0).items()]
    reps = asyncio.run(score_clips_async(items, cfg, det))
    assert not [r.path for r in reps if r.alerts], "a non-speech signal raised an alert"
