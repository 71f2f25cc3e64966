"""Loading models: the provider really in use, and one clear error for every broken model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from streamd.errors import ModelError, NoModelError
from streamd.model.manifest import load_manifest, resolve_manifest
from streamd.model.session import Detector


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    d = tmp_path / "models"
    shutil.copytree(tiny_model_dir, d)
    return d


def test_loads_and_reports_provider(model_copy: Path) -> None:
    det = Detector.load(model_copy / "tiny.yaml", ["cuda", "cpu"])
    assert det.provider == "cpu"  # no GPU here: the session says so, whatever was asked
    assert det.session.get_providers()[0] == "CPUExecutionProvider"


def test_require_gpu_refuses_cpu(model_copy: Path) -> None:
    with pytest.raises(ModelError, match="require_gpu"):
        Detector.load(model_copy / "tiny.yaml", ["cuda", "cpu"], require_gpu=True)


def test_onnx_that_is_not_a_model(model_copy: Path) -> None:
    onnx = model_copy / "tiny.onnx"
    onnx.write_bytes(b"this is not protobuf" * 10)
    with pytest.raises(ModelError, match="sha256"):
        Detector.load(model_copy / "tiny.yaml")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        Detector.load(model_copy / "tiny.yaml", check_sha=False)


def test_manifest_missing_key(model_copy: Path) -> None:
    m = yaml.safe_load((model_copy / "tiny.yaml").read_text())
    del m["fake_index"]
    (model_copy / "tiny.yaml").write_text(yaml.safe_dump(m))
    with pytest.raises(ModelError, match="fake_index: missing"):
        load_manifest(model_copy / "tiny.yaml")


def test_fake_index_outside_labels(model_copy: Path) -> None:
    m = yaml.safe_load((model_copy / "tiny.yaml").read_text())
    m["fake_index"] = 5
    (model_copy / "tiny.yaml").write_text(yaml.safe_dump(m))
    with pytest.raises(ModelError, match="outside labels"):
        load_manifest(model_copy / "tiny.yaml")


def test_input_not_batch_by_samples(model_copy: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", 1, "samples"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, "samples"])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["waveform"], ["logits"])], "g", [x], [y]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(model_copy / "tiny.onnx"))
    with pytest.raises(ModelError, match=r"\[batch, samples\]"):
        Detector.load(model_copy / "tiny.yaml", check_sha=False)


def test_resolve_manifest(model_copy: Path, tmp_path: Path) -> None:
    assert resolve_manifest(model_copy, None).stem == "tiny"
    from streamd.model.shipped import builtin_manifest

    if builtin_manifest() is not None:  # nothing installed: the built-in default
        assert resolve_manifest(tmp_path / "empty", None) == builtin_manifest()
    else:
        with pytest.raises(NoModelError, match="streamd models pull"):
            resolve_manifest(tmp_path / "empty", None)
    with pytest.raises(NoModelError, match="installed: tiny"):
        resolve_manifest(model_copy, "other")
    shutil.copy(model_copy / "tiny.yaml", model_copy / "twin.yaml")
    with pytest.raises(NoModelError, match="several models"):
        resolve_manifest(model_copy, None)


def test_pad_rules(model_copy: Path) -> None:
    det = Detector.load(model_copy / "tiny.yaml")
    short = np.arange(100, dtype=np.float32)
    assert len(det.prepare(short)) == det.manifest.min_samples  # zero rule pads up to min
    det.manifest.window.pad = "repeat"
    tiled = det.prepare(short)
    assert len(tiled) == det.manifest.max_samples and tiled[100] == 0 and tiled[199] == 99
    long = np.arange(det.manifest.max_samples + 500, dtype=np.float32)
    assert np.array_equal(det.prepare(long), long[: det.manifest.max_samples])


def test_p_fake_softmax_and_multi_index(model_copy: Path) -> None:
    det = Detector.load(model_copy / "tiny.yaml")
    logits = np.array([[0.0, 0.0], [0.0, np.log(3.0)]], dtype=np.float32)
    np.testing.assert_allclose(det.p_fake(logits), [0.5, 0.75], atol=1e-6)
    det.manifest.fake_index = [0, 1]
    np.testing.assert_allclose(det.p_fake(logits), [1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("onnx", ["../tiny.onnx", "/etc/passwd", "sub/../../x.onnx", "~/x.onnx"])
def test_manifest_cannot_point_outside_its_folder(model_copy: Path, onnx: str) -> None:
    m = yaml.safe_load((model_copy / "tiny.yaml").read_text())
    m["onnx"] = onnx
    (model_copy / "tiny.yaml").write_text(yaml.safe_dump(m))
    with pytest.raises(ModelError, match=r"manifest key onnx: .*relative to the manifest's folder"):
        Detector.load(model_copy / "tiny.yaml")


def test_symlinked_graph_outside_the_folder_is_refused(model_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (model_copy / "tiny.onnx").rename(outside / "tiny.onnx")
    (model_copy / "tiny.onnx").symlink_to(outside / "tiny.onnx")
    with pytest.raises(ModelError, match="outside the manifest's folder"):
        Detector.load(model_copy / "tiny.yaml")


def test_unknown_front_end_is_one_line(model_copy: Path) -> None:
    m = yaml.safe_load((model_copy / "tiny.yaml").read_text())
    m["front_end"] = "streamd_evil_module"
    (model_copy / "tiny.yaml").write_text(yaml.safe_dump(m))
    with pytest.raises(ModelError, match="not a front end this streamd knows") as err:
        Detector.load(model_copy / "tiny.yaml")
    assert "\n" not in str(err.value)
