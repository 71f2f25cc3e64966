"""fp16 / int8 variants of an installed model: written with their own manifest, loadable, and
compared window by window with the fp32 model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamd.bench.precision import compare, make_variant
from streamd.model.manifest import load_manifest, resolve_manifest, sha256_file
from streamd.model.session import Detector


def test_fp16_variant_keeps_parity_with_fp32(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = Path(resolve_manifest(tiny_model_dir, "tiny"))
    path = make_variant(src, "fp16", tmp_path)
    m = load_manifest(path)
    assert m.name == "tiny-fp16" and m.sha256 == sha256_file(tmp_path / "tiny-fp16.onnx")
    base, fp16 = Detector.load(src, ["cpu"]), Detector.load(path, ["cpu"])
    rng = np.random.default_rng(0)
    windows = [(0.1 * rng.standard_normal(40000)).astype(np.float32) for _ in range(6)]
    r = compare(base, fp16, windows, np.array([0, 1, 0, 1, 0, 1]))
    assert r["windows"] == 6 and 0 < r["max_dp"] < 0.02  # fp16 moves scores, a little
    assert r["flips"] == 0 and r["auc_fp32"] is not None


def test_int8_variant_loads_and_is_compared(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = Path(resolve_manifest(tiny_model_dir, "tiny"))
    int8 = Detector.load(make_variant(src, "int8", tmp_path), ["cpu"])
    assert int8.name == "tiny-int8"
    rng = np.random.default_rng(1)
    windows = [(0.1 * rng.standard_normal(40000)).astype(np.float32) for _ in range(2)]
    r = compare(Detector.load(src, ["cpu"]), int8, windows, np.array([0, 1]))
    assert r["max_dp"] >= 0 and r["ms_per_window_variant"] > 0
