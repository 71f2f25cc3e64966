"""AASIST: the sinc front end, parity with the original's logits, ONNX export and the tiling."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import onnxruntime as ort
import torch

from streamd.export.aasist import (
    AASIST,
    KNOWN_CONFIGS,
    WINDOW_SAMPLES,
    AasistForExport,
    infer_config,
    load_checkpoint,
    read_model_config,
    tile_to_length,
)
from streamd.export.aasist_layers import sinc_bandpass_filters

from tests.helpers.families import (
    AASIST_CHECKPOINTS,
    AasistReference,
    aasist_synthetic_inputs,
)
from tests.helpers.tinymodels import TINY_AASIST, tiny_aasist

torch.set_num_threads(2)

TOL = 1e-4
CHECKPOINTS = AASIST_CHECKPOINTS
CONFS = {
    "aasist": "aasist/AASIST.conf",
    "aasist-l": "aasist/AASIST-L.conf",
    "aasist-asvspoof5": "aasist-asvspoof5/AASIST_ASVspoof5.conf",
}
# the big models run on a few clips (one window costs ~0.3 s here): 8 kHz, short and long, real
# and fake; AASIST-L runs on every reference input in one batch
SUBSET = (0, 3, 12, 20, 27, 39)


def original_tiling(x: np.ndarray, n: int = WINDOW_SAMPLES) -> np.ndarray:
    """The original evaluation's recipe: cut long input, repeat short input whole, then cut."""
    if x.shape[0] >= n:
        return x[:n]
    return np.tile(x, n // x.shape[0] + 1)[:n]


_LOGITS_CACHE: dict[str, tuple[Any, dict[str, np.ndarray]]] = {}


def model_logits(
    name: str, shared_dir: Path, aasist_reference: AasistReference
) -> dict[str, np.ndarray]:
    """Run one checkpoint once per session on its clips plus our own synthetic inputs, batched."""
    if name not in _LOGITS_CACHE:
        pth, conf = CHECKPOINTS[name]
        model = load_checkpoint(
            shared_dir / "models" / pth, shared_dir / "models" / conf if conf else None
        )
        clip_names = list(aasist_reference.clips)
        if name != "aasist-l":
            clip_names = [clip_names[i] for i in SUBSET]
        inputs = {n: aasist_reference.clips[n] for n in clip_names} | aasist_synthetic_inputs()
        batch = torch.from_numpy(np.stack(list(inputs.values())))
        with torch.inference_mode():
            out = model(batch).numpy()
        _LOGITS_CACHE[name] = (model, dict(zip(inputs, out, strict=True)))
    return _LOGITS_CACHE[name][1]


# --- the sinc front end ------------------------------------------------------------------------


def test_sinc_filterbank_equals_reference(shared_dir: Path) -> None:
    ref = np.load(shared_dir / "models" / "reference" / "aasist_sinc_bandpass_70x129.npy")
    ours = sinc_bandpass_filters(70, 128, 16000)
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (70, 129)
    # bit-exact here (numpy 2.4, x86); allow one float32 ulp of the largest tap elsewhere
    np.testing.assert_allclose(ours, ref, rtol=0, atol=4e-9)
    assert np.array_equal(AASIST(KNOWN_CONFIGS["AASIST"]).conv_time.filters[:, 0].numpy(), ours)


def test_sinc_filterbank_is_linear_phase_mel_bandpass() -> None:
    bank = sinc_bandpass_filters(70, 128, 16000).astype(np.float64)
    assert bank.shape == (70, 129)
    np.testing.assert_allclose(bank, bank[:, ::-1], atol=1e-9)  # symmetric taps
    response = np.abs(np.fft.rfft(bank, n=4096, axis=1))
    peaks = np.argmax(response, axis=1) * 8000 / 2048
    assert np.all(np.diff(peaks[1:]) >= 0), "pass bands must rise with the filter index"
    assert peaks[0] < 200 and peaks[-1] > 6000
    assert np.diff(peaks[-10:]).mean() > 3 * np.diff(peaks[1:11]).mean(), "mel: wider at the top"


# --- loading and parity with the original ------------------------------------------------------


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_config_inferred_from_shapes_equals_conf(name: str, shared_dir: Path) -> None:
    pth = shared_dir / "models" / CHECKPOINTS[name][0]
    state = torch.load(pth, map_location="cpu", weights_only=True)
    cfg, which = infer_config(state)
    conf = read_model_config(shared_dir / "models" / CONFS[name])
    assert which == ("AASIST-L" if name == "aasist-l" else "AASIST")
    for key in ("filts", "gat_dims", "pool_ratios", "temperatures", "first_conv", "nb_samp"):
        assert cfg[key] == conf[key], key


@pytest.mark.slow
def test_aasist_l_all_reference_inputs_in_one_batch(
    shared_dir: Path, aasist_reference: AasistReference
) -> None:
    got = model_logits("aasist-l", shared_dir, aasist_reference)
    assert len(aasist_reference.clips) == 40
    diffs = {
        c: np.abs(got[c] - aasist_reference.logits["aasist-l"][c]).max()
        for c in aasist_reference.clips
    }
    worst = max(diffs, key=lambda c: diffs[c])
    assert diffs[worst] < TOL, f"{worst}: {diffs[worst]:.2e}"
    assert "inferred from shapes" in _LOGITS_CACHE["aasist-l"][0].config_source


@pytest.mark.parametrize("name", ["aasist", "aasist-asvspoof5"])
@pytest.mark.slow
def test_full_models_reproduce_reference_logits(
    name: str, shared_dir: Path, aasist_reference: AasistReference
) -> None:
    got = model_logits(name, shared_dir, aasist_reference)
    clips = [c for c in got if not c.startswith("synthetic:")]
    assert len(clips) == len(SUBSET)
    for clip in clips:
        np.testing.assert_allclose(got[clip], aasist_reference.logits[name][clip], rtol=0, atol=TOL)
    # the reference is not trivially constant: the clips' logits spread over several units
    spread = np.ptp([aasist_reference.logits[name][c][1] for c in clips])
    assert spread > 1.0


@pytest.mark.parametrize("name", list(CHECKPOINTS))
@pytest.mark.slow
def test_synthetic_inputs(name: str, shared_dir: Path, aasist_reference: AasistReference) -> None:
    for key, x in aasist_synthetic_inputs().items():
        np.testing.assert_array_equal(x, aasist_reference.npz[key])  # our recipe is the reference's
    got = model_logits(name, shared_dir, aasist_reference)
    for key in aasist_synthetic_inputs():
        np.testing.assert_allclose(got[key], aasist_reference.logits[name][key], rtol=0, atol=TOL)


def test_batch_equals_single_items(shared_dir: Path, aasist_reference: AasistReference) -> None:
    batched = model_logits("aasist-l", shared_dir, aasist_reference)
    model = _LOGITS_CACHE["aasist-l"][0]
    for clip in list(aasist_reference.clips)[:2]:
        with torch.inference_mode():
            single = model(torch.from_numpy(aasist_reference.clips[clip][None])).numpy()[0]
        np.testing.assert_allclose(single, batched[clip], rtol=0, atol=1e-5)


# --- a tiny random model: loading rules, export, tiling -----------------------------------------


@pytest.fixture(scope="module")
def tiny() -> AASIST:
    model: AASIST = tiny_aasist()
    return model


def speechlike(n: int, seed: int) -> np.ndarray:
    """Harmonics of a wandering pitch under a syllable-rate envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    f0 = 100 + 60 * rng.random() + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30))
    env = 0.5 * (1 + np.sin(2 * np.pi * (3 + rng.random()) * t))
    return (0.2 * env * voiced + 0.01 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_onnx(tiny: AASIST, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("tiny-aasist") / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings: node counts are constants by design
        torch.onnx.export(
            AasistForExport(tiny).eval(),
            (torch.from_numpy(np.stack([speechlike(48000, 0), speechlike(48000, 1)])),),
            path,
            dynamo=False,
            opset_version=17,
            input_names=["waveform"],
            output_names=["logits"],
            dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "logits": {0: "batch"}},
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("seconds", [2.5, 3.3, 4.0, 4.0375, 5.0])
def test_tiny_onnx_matches_torch(seconds: float, tiny: AASIST, tiny_onnx: Any) -> None:
    n = round(seconds * 16000)
    wrapper = AasistForExport(tiny).eval()
    batch = np.stack([speechlike(n, 10 + i) for i in range(3)])
    batch[2] = np.random.default_rng(5).standard_normal(n).astype(np.float32) * 0.1
    with torch.inference_mode():
        want = wrapper(torch.from_numpy(batch)).numpy()
    got3 = tiny_onnx.run(None, {"waveform": batch})[0]
    got1 = np.concatenate(
        [tiny_onnx.run(None, {"waveform": batch[i : i + 1]})[0] for i in range(3)]
    )
    assert got3.shape == (3, 2)
    np.testing.assert_allclose(got3, want, rtol=0, atol=TOL)
    np.testing.assert_allclose(got1, want, rtol=0, atol=TOL)
    # the check can see a broken graph only if the logits depend on the input well above TOL
    assert np.ptp(want, axis=0).max() > 100 * TOL


@pytest.mark.parametrize("n", [1, 7, 40000, 64599, 64600, 64601, 100000])
def test_tiling_equals_original_recipe(n: int) -> None:
    x = np.random.default_rng(n).standard_normal((2, n)).astype(np.float32)
    got = tile_to_length(torch.from_numpy(x)).numpy()
    want = np.stack([original_tiling(row) for row in x])
    assert got.shape == (2, WINDOW_SAMPLES)
    np.testing.assert_array_equal(got, want)


def test_export_wrapper_equals_model_on_tiled_input(tiny: AASIST) -> None:
    x = speechlike(41234, 3)
    with torch.inference_mode():
        wrapped = AasistForExport(tiny)(torch.from_numpy(x[None])).numpy()
        direct = tiny(torch.from_numpy(original_tiling(x)[None])).numpy()
    np.testing.assert_array_equal(wrapped, direct)


def test_load_checkpoint_is_strict_and_needs_conf_for_unknown_shapes(
    tiny: AASIST, tmp_path: Path
) -> None:
    conf = tmp_path / "tiny.conf"
    conf.write_text(json.dumps({"model_config": TINY_AASIST}))
    state = tiny.state_dict()

    full = tmp_path / "tiny.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, full)  # DataParallel prefix
    loaded = load_checkpoint(full, conf)
    assert not loaded.training and loaded.config_source == str(conf)
    x = torch.from_numpy(speechlike(WINDOW_SAMPLES, 4)[None])
    with torch.inference_mode():
        np.testing.assert_array_equal(loaded(x).numpy(), tiny(x).numpy())

    with pytest.raises(ValueError, match=r"pass its \.conf"):
        load_checkpoint(full)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if k != "encoder.1.0.bn1.running_var"}, partial)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_checkpoint(partial, conf)
