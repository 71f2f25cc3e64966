"""``streamd models list|verify`` and what users see when an installed model is broken."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from streamd.cli import main


@pytest.fixture
def models(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the models dir holding ``tiny`` (random wav2vec2, exported by the CLI)."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "models"))


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    import soundfile as sf

    from tests.conftest import tone

    path = tmp_path / "tone.wav"
    sf.write(path, np.concatenate([tone(180, 3.0), tone(230, 3.0)]), 16000)
    return path


def install(models: Path, name: str, onnx_bytes: bytes | None = None, **changes: object) -> None:
    """A copy of ``tiny`` under another name, with another graph and manifest changes."""
    m = yaml.safe_load((models / "tiny.yaml").read_text())
    m.update(name=name, onnx=f"{name}.onnx", **changes)
    m.pop("sha256", None)
    for key in [k for k, v in changes.items() if v is None]:
        m.pop(key)
    (models / f"{name}.yaml").write_text(yaml.safe_dump(m))
    (models / f"{name}.onnx").write_bytes(
        onnx_bytes if onnx_bytes is not None else (models / "tiny.onnx").read_bytes()
    )


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def image_model() -> bytes:
    """A valid ONNX graph whose input is an image [batch, 3, 224, 224], not [batch, samples]."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", 3, 224, 224])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [0, -1])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["waveform"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("Slice", ["m", "s", "e", "a"], ["sl"]),
            helper.make_node("Reshape", ["sl", "shape"], ["logits"]),
        ],
        "image",
        [x],
        [y],
        initializer=[
            shape,
            helper.make_tensor("s", TensorProto.INT64, [1], [0]),
            helper.make_tensor("e", TensorProto.INT64, [1], [2]),
            helper.make_tensor("a", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def test_list_shows_family_window_labels_and_sha(
    models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install(models, "nowindow", window=None)
    assert main(["models", "list", "--models-dir", str(models)]) == 0
    out = capsys.readouterr().out
    tiny = next(line for line in out.splitlines() if line.startswith("tiny:"))
    sha = yaml.safe_load((models / "tiny.yaml").read_text())["sha256"]
    assert "family=wav2vec2-seqcls" in tiny and "window=2.5-4.0s" in tiny and "fake=fake" in tiny
    assert sha[:16] in tiny and "providers=" in tiny
    assert (
        "nowindow: BROKEN" in out and "window" in out.split("nowindow: BROKEN")[1].splitlines()[0]
    )


def test_list_of_an_empty_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing installed: the built-in default is what the daemon uses, so that is listed."""
    from streamd.model.shipped import DEFAULT_BUILTIN, builtin_manifest

    assert main(["models", "list", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    if builtin_manifest() is None:
        assert "no models" in out
    else:
        assert f"{DEFAULT_BUILTIN} [built-in, default]" in out


def test_verify_ok_then_mismatch(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers.tinymodels import save_tiny_wav2vec2

    assert main(["models", "verify", "tiny", "--models-dir", str(models)]) == 0
    assert "OK" in capsys.readouterr().out
    other = save_tiny_wav2vec2(tmp_path / "other", seed=7)  # same architecture, other weights
    assert (
        main(["models", "verify", "tiny", "--models-dir", str(models), "--from", str(other)]) == 1
    )
    assert "MISMATCH" in capsys.readouterr().out


def test_verify_unknown_model(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "verify", "nope", "--models-dir", str(models)]) == 2
    err = one_line_error(capsys)
    assert "nope" in err and "installed: tiny" in err


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("garbage", "not a loadable ONNX model"),
        ("truncated", "not a loadable ONNX model"),
        ("missing_key", "manifest key input: missing"),
        ("image_input", "float32 [batch, samples]"),
        ("changed", "sha256"),
    ],
)
def test_broken_models_are_one_line_and_exit_2(
    models: Path, clip: Path, capsys: pytest.CaptureFixture[str], case: str, expect: str
) -> None:
    tiny = (models / "tiny.onnx").read_bytes()
    if case == "garbage":
        install(models, "bad", b"this is not protobuf" * 50)
    elif case == "truncated":
        install(models, "bad", tiny[: len(tiny) // 3])
    elif case == "missing_key":
        install(models, "bad", input=None)
    elif case == "image_input":
        install(models, "bad", image_model())
    else:
        shutil.copy(models / "tiny.yaml", models / "bad.yaml")
        m = yaml.safe_load((models / "bad.yaml").read_text())
        m["onnx"] = "bad.onnx"
        (models / "bad.yaml").write_text(yaml.safe_dump(m))
        (models / "bad.onnx").write_bytes(tiny[:-1] + bytes([tiny[-1] ^ 1]))
    assert main(["score", str(clip), "--model", "bad", "--models-dir", str(models)]) == 2
    assert expect in one_line_error(capsys)
