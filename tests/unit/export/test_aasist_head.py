"""The built-in detector's graph: frozen AASIST readout + standardised head, one ONNX graph that
matches PyTorch, loads under the model contract, and whose p_fake is sigmoid(head score)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from streamd.export.aasist import AASIST, WINDOW_SAMPLES  # noqa: E402
from streamd.export.aasist_head import AasistWithHead, HeadWeights, export_with_head  # noqa: E402
from streamd.export.probe_audio import speechlike  # noqa: E402
from streamd.model.session import Detector  # noqa: E402

from tests.helpers.tinymodels import TINY_AASIST, tiny_aasist  # noqa: E402


def tiny_encoder() -> AASIST:
    model: AASIST = tiny_aasist()
    return model


def random_head(
    dim: int, hidden: int | None, seed: int = 0, emb: np.ndarray | None = None
) -> HeadWeights:
    """Random layers on standardised inputs (statistics of ``emb`` when given), outputs near 0."""
    rng = np.random.default_rng(seed)
    sizes = [dim, hidden, 1] if hidden else [dim, 1]
    layers = [
        (rng.normal(0, 1 / np.sqrt(a), (b, a)), rng.normal(0, 0.1, b))
        for a, b in itertools.pairwise(sizes)
    ]
    if emb is None:
        return HeadWeights(np.zeros(dim), np.ones(dim), layers)
    return HeadWeights(emb.mean(axis=0), emb.std(axis=0) + 1e-3, layers)


@pytest.mark.parametrize("hidden", [None, 8])
def test_export_matches_torch_and_loads_as_a_detector(tmp_path: Path, hidden: int | None) -> None:
    enc = tiny_encoder()
    with torch.inference_mode():
        probe = torch.from_numpy(
            np.stack([speechlike(WINDOW_SAMPLES, seed=10 + i) for i in range(4)])
        )
        stats = enc.embed(probe).numpy()
    head = random_head(5 * TINY_AASIST["gat_dims"][1], hidden, emb=stats)
    res = export_with_head(
        enc,
        head,
        tmp_path,
        "tiny-head",
        threshold=0.7,
        source="test",
        license="MIT",
        metrics={"note": "random"},
        extra={"card": {"x": 1}},
    )
    assert res.max_diff < 1e-4
    det = Detector.load(res.manifest_path, ["cpu"])
    assert det.manifest.threshold == 0.7 and det.manifest.labels == ["spoof", "bonafide"]
    batch = [speechlike(n, seed=i) for i, n in enumerate((40000, 64000, 64600))]
    p, logits = det.score_windows(batch)
    model = AasistWithHead(enc, head).eval()
    with torch.inference_mode():
        emb = np.stack(
            [enc.embed(torch.from_numpy(det.prepare(w))[None])[0].numpy() for w in batch]
        )
        ref = model(torch.from_numpy(np.stack([det.prepare(w) for w in batch]))).numpy()
    assert np.abs(logits - ref).max() < 1e-4
    # p_fake = sigmoid(head score), and the numpy head agrees with the graph
    expect = 1 / (1 + np.exp(-head.score(emb)))
    assert np.abs(p - expect).max() < 1e-4
    assert len(set(np.round(p, 4))) > 1, "the parity check would be blind on constant outputs"


def test_head_weights_round_trip(tmp_path: Path) -> None:
    h = random_head(40, 6)
    h.save(tmp_path / "h.npz")
    g = HeadWeights.load(tmp_path / "h.npz")
    x = np.random.default_rng(1).normal(size=(5, 40))
    assert np.allclose(h.score(x), g.score(x))
