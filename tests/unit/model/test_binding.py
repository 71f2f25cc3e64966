"""The GPU path's pieces, run on the CPU provider: batch buckets, IO binding, saved graphs.

A GPU changes where the buffers live, not what the code does; these check the code path and
that no option moves a score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.errors import ModelError
from streamd.model.binding import Buckets
from streamd.model.manifest import resolve_manifest
from streamd.model.session import Detector, RuntimeOptions


@pytest.fixture(scope="module")
def plain(tiny_model_dir: Path) -> Detector:
    return Detector.load(resolve_manifest(tiny_model_dir, "tiny"), ["cpu"])


def batch(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(40000)).astype(np.float32) for _ in range(n)]


@given(st.integers(1, 300), st.lists(st.integers(1, 64), min_size=1, max_size=6))
def test_bucket_split_covers_every_row_with_a_bucket_that_fits(n: int, sizes: list[int]) -> None:
    b = Buckets(sizes)
    runs = b.split(n)
    assert sum(rows for rows, _ in runs) == n
    assert all(rows <= bucket and bucket in b.sizes for rows, bucket in runs)
    # only the last run may be padded, and it uses the smallest bucket that holds it
    rows, bucket = runs[-1]
    assert bucket == min(s for s in b.sizes if s >= rows)


def test_buckets_up_to_batch_max() -> None:
    assert Buckets.up_to(32).sizes == (1, 2, 4, 8, 16, 32)
    assert Buckets.up_to(12).sizes == (1, 2, 4, 8, 12)
    with pytest.raises(ValueError):
        Buckets([0, 4])


def test_io_binding_and_buckets_on_cpu_give_the_same_scores(
    tiny_model_dir: Path, plain: Detector
) -> None:
    det = Detector.load(
        resolve_manifest(tiny_model_dir, "tiny"),
        ["cpu"],
        runtime=RuntimeOptions(io_binding=True, buckets=(1, 4)),
    )
    assert det.runner is not None and det.buckets is not None
    ws = batch(6)
    want = plain.score_windows(ws)[1]
    got = det.score_windows(ws)[1]  # 6 rows -> a bucket of 4, then 2 padded to 4
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert det.runner.shapes == 1  # one buffer set reused for both runs
    np.testing.assert_allclose(det.score_windows(ws[:1])[1], want[:1], atol=1e-5)
    assert det.runner.shapes == 2


def test_cpu_defaults_to_plain_runs(plain: Detector) -> None:
    assert plain.runner is None and plain.buckets is None


def test_saved_optimised_graph_is_reused_and_scores_the_same(
    tiny_model_dir: Path, plain: Detector, tmp_path: Path
) -> None:
    rt = RuntimeOptions(optimized_dir=tmp_path / "opt")
    manifest = resolve_manifest(tiny_model_dir, "tiny")
    first = Detector.load(manifest, ["cpu"], runtime=rt)
    saved = list((tmp_path / "opt").glob("*.cpu.all.ort.onnx"))
    assert len(saved) == 1 and saved[0].stat().st_size > 0
    second = Detector.load(manifest, ["cpu"], runtime=rt)  # loads the saved graph
    ws = batch(2, 1)
    want = plain.score_windows(ws)[1]
    np.testing.assert_allclose(first.score_windows(ws)[1], want, atol=1e-5)
    np.testing.assert_allclose(second.score_windows(ws)[1], want, atol=1e-5)


def test_unknown_optimisation_level_is_a_clear_error(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelError, match="optimize must be one of"):
        Detector.load(
            resolve_manifest(tiny_model_dir, "tiny"), ["cpu"], runtime=RuntimeOptions(optimize="x")
        )


def test_gpu_provider_options_name_what_matters() -> None:
    rt = RuntimeOptions(trt_fp16=True, trt_cache_dir=Path("/tmp/trt"))
    cuda = rt.provider_options("CUDAExecutionProvider")
    assert cuda["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert cuda["arena_extend_strategy"] == "kSameAsRequested"
    trt = rt.provider_options("TensorrtExecutionProvider")
    assert trt["trt_fp16_enable"] is True and trt["trt_engine_cache_path"] == "/tmp/trt"
    assert rt.provider_options("CPUExecutionProvider") == {}
