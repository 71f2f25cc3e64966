"""Front-end reuse on a tiny random-weight AASIST: cached frames equal a whole-window run inside
the window, scores barely move, and anything unusual falls back to the whole graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamd.model.reuse import STRIDE
from streamd.model.session import Detector, RuntimeOptions

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow  # exports a tiny AASIST through torch (~20 s on 2 busy cores)

TINY = {
    "nb_samp": 64600,
    "first_conv": 128,
    "filts": [70, [1, 8], [8, 8], [8, 16], [16, 16]],
    "gat_dims": [16, 8],
    "pool_ratios": [0.5, 0.7, 0.5, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from streamd.export.aasist import AASIST
    from streamd.export.aasist_export import load_plan
    from streamd.export.export import export_plan

    root = tmp_path_factory.mktemp("tiny-aasist")
    torch.manual_seed(0)
    model = AASIST(TINY).eval()
    with torch.no_grad():  # unit-scale batch-norm statistics, so the scores depend on the input
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                assert mod.running_mean is not None and mod.running_var is not None
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
        first = model.first_bn
        assert first.running_var is not None and first.running_mean is not None
        first.running_var.fill_(1e-4)
        first.running_mean.fill_(0.005)
        model.out_layer.weight.mul_(10.0)
    torch.save(model.state_dict(), root / "tiny.pth")
    (root / "tiny.conf").write_text(json.dumps({"model_config": TINY}))
    plan = load_plan(root / "tiny.pth", config_path=root / "tiny.conf")
    return export_plan(plan, root / "models", "tiny-aasist", say=lambda s: None).manifest_path


def speechlike(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 2 * t)) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    env = 0.5 * (1 + np.sin(2 * np.pi * 3.3 * t))
    return (0.2 * env * voiced + 0.01 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def pair(manifest: Path) -> tuple[Detector, Detector]:
    plain = Detector.load(manifest, ["cpu"])
    reuse = Detector.load(manifest, ["cpu"], runtime=RuntimeOptions(reuse_front_end=True))
    assert reuse.reuse is not None
    return plain, reuse


def test_windows_of_a_stream_score_as_whole_windows_do(pair: tuple[Detector, Detector]) -> None:
    plain, det = pair
    assert det.reuse is not None
    n = det.manifest.max_samples
    speech = speechlike(n + 8 * 16000, 1)
    hop = 16000  # not a multiple of the 27-sample frame: windows snap to the grid
    ends = list(range(n, len(speech) + 1, hop))
    windows = [speech[e - n : e] for e in ends]
    got_p, got = det.score_windows(windows, [("s1", e) for e in ends])
    want_p, want = plain.score_windows(windows)
    assert det.reuse.full == 1 and det.reuse.reused == len(ends) - 1
    assert np.abs(got - want).max() < 0.05 * (np.abs(want).max() + 1)
    np.testing.assert_allclose(got_p, want_p, atol=0.02)
    assert not np.allclose(want[0], want[-1], atol=1e-3)  # the scores do depend on the audio


def test_cached_frames_equal_a_whole_window_run_inside_the_window(
    pair: tuple[Detector, Detector],
) -> None:
    _, det = pair
    r = det.reuse
    assert r is not None
    n = det.manifest.max_samples
    speech = speechlike(n + 3 * STRIDE * 600, 2)
    ends = range(n, len(speech) + 1, STRIDE * 600)  # hops on the frame grid
    for end in ends:
        cached = r.features("s2", speech[end - n : end], end)
        whole = r._front(speech[None, end - n : end])[0]
        assert cached is not None and cached.shape == whole.shape
        np.testing.assert_allclose(cached[..., 1:-1], whole[..., 1:-1], rtol=0, atol=1e-5)
    assert len(ends) == 4 and r.reused >= 3


def test_short_windows_gaps_and_plain_calls_use_the_whole_graph(
    pair: tuple[Detector, Detector],
) -> None:
    plain, det = pair
    r = det.reuse
    assert r is not None
    n = det.manifest.max_samples
    speech = speechlike(3 * n, 3)
    short = speech[:40000]
    assert r.features("s3", short, 40000) is None  # not full length: the scorer runs it whole
    full_before = r.full
    r.features("s3", speech[:n], n)
    r.features("s3", speech[2 * n : 3 * n], 3 * n)  # a gap longer than the cache: start again
    assert r.full == full_before + 2
    p, _ = det.score_windows([short, speech[:n]])  # no places given: plain whole-graph runs
    np.testing.assert_allclose(p, plain.score_windows([short, speech[:n]])[0], atol=1e-5)


def test_idle_streams_are_forgotten(pair: tuple[Detector, Detector]) -> None:
    _, det = pair
    r = det.reuse
    assert r is not None
    n = det.manifest.max_samples
    r.features("s4", speechlike(n, 4), n)
    assert r.streams >= 1
    r.forget_idle(idle_s=0.0)
    assert r.streams == 0
