"""RawGAT-ST through ``streamd models pull rawgat-st`` (from a local mirror on 127.0.0.1): the
installed ONNX graph reproduces the PyTorch model on the reference inputs to 1e-4, at batch > 1,
and the daemon's scorer loads it and tiles short windows as the authors' evaluation does."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import torch
import yaml

from streamd.cli import main
from streamd.export.catalog import KNOWN
from streamd.export.rawgat import load_checkpoint
from streamd.model.session import Detector

from tests.helpers.families import AasistReference

PTH = "rawgat-st/RawGAT_ST_mul.pth"


@pytest.fixture(scope="module")
def mirror(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local HTTP mirror of GitHub holding the published checkpoint at its catalog path."""
    root = tmp_path_factory.mktemp("mirror")
    target = root / KNOWN["rawgat-st"].path
    target.parent.mkdir(parents=True)
    target.symlink_to(shared_dir / "models" / PTH)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def pulled(mirror: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("rawgat-models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STREAMD_MODEL_MIRROR", mirror)
        args = ["models", "pull", "rawgat-st", "--models-dir", str(tmp / "models")]
        assert main([*args, "--cache-dir", str(tmp / "cache")]) == 0
    return tmp / "models" / "rawgat-st.yaml"


@pytest.mark.slow
def test_pulled_onnx_matches_pytorch_on_the_reference_inputs(
    pulled: Path, shared_dir: Path, aasist_reference: AasistReference
) -> None:
    x = np.stack(list(aasist_reference.npz.values()))
    assert len(x) >= 40 and x.shape[1] == 64600
    model = load_checkpoint(shared_dir / "models" / PTH)
    torch.set_num_threads(2)
    batches = [x[i : i + 8] for i in range(0, len(x), 8)]  # batches of 8
    with torch.inference_mode():
        want = np.concatenate([model(torch.from_numpy(b)).numpy() for b in batches])
    det = Detector.load(pulled, ["cpu"])
    got = np.concatenate([det.infer(b) for b in batches])
    assert np.abs(got - want).max() < 1e-4
    assert np.ptp(want[:, 1]) > 1.0  # the inputs are told apart, so the check can fail


@pytest.mark.slow
def test_pulled_manifest_and_scorer_tiling(pulled: Path, aasist_reference: AasistReference) -> None:
    m = yaml.safe_load(pulled.read_text())
    assert m["family"] == "rawgat-st" and m["labels"] == ["spoof", "bonafide"]
    assert m["fake_index"] == 0 and m["fixed_length"] is True
    assert m["window"] == {"min_s": 2.5, "max_s": 4.0375, "pad": "repeat"}
    assert m["checkpoint_sha256"] == KNOWN["rawgat-st"].sha256 and m["license"] == "MIT"
    assert m["source"].startswith("https://github.com/eurecom-asp/RawGAT-ST-antispoofing")
    assert "1.06%" in m["metrics"]["reported"]
    assert m["export"]["max_abs_diff_vs_torch"] < 1e-4

    det = Detector.load(pulled, ["cpu"])
    x = aasist_reference.inputs["synthetic:sine440"]
    for seconds in (2.5, 3.17):
        n = int(seconds * 16000)
        window = x[:n] * np.hanning(n).astype(np.float32)
        tiled = np.tile(window, -(-64600 // n))[:64600]
        p_fake, logits = det.score_windows([window])
        np.testing.assert_allclose(logits[0], det.infer(tiled[None])[0], atol=1e-4)
        z = logits[0] - logits[0].max()
        assert abs(p_fake[0] - np.exp(z[0]) / np.exp(z).sum()) < 1e-5  # p_fake is softmax[0]
