"""RawGAT-ST: config and loading rules, ONNX export of a tiny random model, and the published
checkpoint against the logits of the authors' own code."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import onnxruntime as ort
import torch
import yaml

from streamd.errors import ModelError
from streamd.export import guess_family
from streamd.export.aasist import AASIST
from streamd.export.rawgat import (
    PUBLISHED_CONFIG,
    RawGatConfig,
    RawGatForExport,
    RawGatST,
    infer_config,
    load_checkpoint,
    read_model_config,
)
from streamd.export.rawgat_export import load_plan

from tests.helpers.families import AasistReference, aasist_synthetic_inputs
from tests.helpers.tinymodels import TINY_AASIST

torch.set_num_threads(2)

TOL = 1e-4
PTH = "rawgat-st/RawGAT_ST_mul.pth"
YAML = "rawgat-st/model_config_RawGAT_ST.yaml"

#: a RawGAT-ST small enough to run in milliseconds: 12 sinc filters (4 bands), a 1 s window
#: (7 frames), narrow encoders and graphs
TINY: dict[str, Any] = {
    "nb_samp": 16000,
    "out_channels": 12,
    "first_conv": 16,
    "in_channels": 1,
    "filts": [8, [8, 8], [8, 16], [16, 16]],
    "nb_classes": 2,
    "gat_dims": [8, 4],
    "pool_ratios": [0.64, 0.81, 0.64],
    "fused_nodes": 6,
}

#: logits of the authors' model.py (eurecom-asp/RawGAT-ST-antispoofing at 6903c2f, the version
#: whose key names the published checkpoint has; torch 2.13 CPU, eval mode, batches of 8) on
#: inputs from ../shared/models/reference/aasist_reference_inputs.npz and the two synthetic ones
ORIGINAL_LOGITS = {
    "Jakobovski__free-spoken-digit-dataset/recordings/0_george_0.wav": (5.603342533, -4.060654163),
    "Jakobovski__free-spoken-digit-dataset/recordings/9_yweweler_1.wav": (
        -2.165487528,
        1.660467267,
    ),
    "jik876__hifi-gan-demo/samples/ss/GT/ss_gt_1.flac": (13.130297661, -9.163090706),
    "jaywalnut310__vits-demo/wavs/ms_01_vits.flac": (8.066033363, -4.145440578),
    "synthetic:zeros": (4.151772976, -2.962193012),
    "synthetic:sine440": (8.092034340, -6.255428791),
}


def speechlike(n: int, seed: int) -> np.ndarray:
    """Harmonics of a wandering pitch under a syllable-rate envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    f0 = 100 + 60 * rng.random() + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30))
    env = 0.5 * (1 + np.sin(2 * np.pi * (3 + rng.random()) * t))
    return (0.2 * env * voiced + 0.01 * rng.standard_normal(n)).astype(np.float32)


def tiny_rawgat(seed: int = 0) -> RawGatST:
    """The tiny model in eval mode, with batch-norm statistics that keep signals near unit scale
    (default statistics leave the sinc output far below the biases, and every input would get
    the same logits to 1e-4, which would blind the ONNX parity test)."""
    torch.manual_seed(seed)
    model = RawGatST(TINY)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                assert mod.running_mean is not None and mod.running_var is not None
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
        assert model.first_bn.running_var is not None and model.first_bn.running_mean is not None
        model.first_bn.running_var.fill_(1e-4)
        model.first_bn.running_mean.fill_(0.005)
        model.proj_node.weight.mul_(10.0)
    return model.eval()


@pytest.fixture(scope="module")
def tiny() -> RawGatST:
    return tiny_rawgat()


@pytest.fixture(scope="module")
def tiny_onnx(tiny: RawGatST, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("tiny-rawgat") / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings: node counts are constants by design
        torch.onnx.export(
            RawGatForExport(tiny).eval(),
            (torch.from_numpy(np.stack([speechlike(12000, 0), speechlike(12000, 1)])),),
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


# --- config ---------------------------------------------------------------------------------


def test_published_config_gives_the_papers_graph_sizes() -> None:
    cfg = RawGatConfig.from_mapping(PUBLISHED_CONFIG)
    # 70 sinc filters pooled by 3 -> 23 bands; 64,600 samples -> 29 frames after seven poolings
    assert (cfg.spectral_nodes, cfg.temporal_nodes) == (23, 29)
    assert cfg.blocks == ((32, 32), (32, 32), (32, 64), (64, 64), (64, 64), (64, 64))
    model = RawGatST(PUBLISHED_CONFIG)
    # nodes kept by the three poolings: int(0.64 * 23), int(0.81 * 29), int(0.64 * 12)
    assert model.proj1.in_features == 14 and model.proj2.in_features == 23
    assert model.proj_node.in_features == 7
    n_params = sum(p.numel() for p in model.parameters())
    assert 430_000 < n_params < 450_000  # the paper: 0.44 M (two encoders)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"filts": [32, [32, 32], [32, 64]]}, "model.filts"),
        ({"nb_classes": 3}, "2 classes"),
        ({"nb_samp": 3000}, "need 2"),
        ({"pool_ratios": [0.5, 0.5]}, "pool_ratios"),
    ],
)
def test_bad_config_fails_early(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RawGatConfig.from_mapping({**PUBLISHED_CONFIG, **change})


# --- a tiny random model: ONNX export, loading rules -----------------------------------------


@pytest.mark.parametrize("n", [8000, 12345, 16000, 20000])
def test_tiny_onnx_matches_torch_at_batch_1_and_3(n: int, tiny: RawGatST, tiny_onnx: Any) -> None:
    wrapper = RawGatForExport(tiny).eval()
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


def test_embed_then_classify_is_forward(tiny: RawGatST) -> None:
    x = torch.from_numpy(np.stack([speechlike(16000, 7), speechlike(16000, 8)]))
    with torch.inference_mode():
        readout = tiny.embed(x)
        assert readout.shape == (2, tiny.proj_node.in_features)
        np.testing.assert_array_equal(tiny.classify(readout).numpy(), tiny(x).numpy())


def test_eval_block_equals_training_block_without_batch_statistics(tiny: RawGatST) -> None:
    """The eval path folds bn2 into the convolution; with running statistics it is the same
    map as the unfolded one (train-mode conv -> bn2 with the running stats)."""
    x = torch.from_numpy(speechlike(16000, 9)[None])
    encoder = tiny.encoder1
    with torch.inference_mode():
        h = tiny.front(x)
        folded = encoder(h)
        for mod in encoder.modules():
            # the blocks take their unfolded branch; batch norms keep their running statistics
            mod.training = not isinstance(mod, torch.nn.BatchNorm2d)
        try:
            unfolded = encoder(h)
        finally:
            encoder.eval()
    np.testing.assert_allclose(folded.numpy(), unfolded.numpy(), rtol=1e-4, atol=1e-5)


def test_load_is_strict_and_needs_the_yaml_for_unpublished_shapes(
    tiny: RawGatST, tmp_path: Path
) -> None:
    conf = tmp_path / "tiny.yaml"
    conf.write_text(yaml.safe_dump({"optimizer": "Adam", "model": TINY}))
    assert read_model_config(conf) == TINY
    state = tiny.state_dict()
    full = tmp_path / "tiny.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, full)  # DataParallel prefix
    loaded = load_checkpoint(full, conf)
    assert not loaded.training and loaded.config_source == str(conf)
    x = torch.from_numpy(speechlike(16000, 4)[None])
    with torch.inference_mode():
        np.testing.assert_array_equal(loaded(x).numpy(), tiny(x).numpy())

    with pytest.raises(ValueError, match="pass its model_config yaml"):
        load_checkpoint(full)  # shapes differ from the published sinc layer and window
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if k != "encoder2.3.0.bn1.running_var"}, partial)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_checkpoint(partial, conf)
    assert guess_family(full) == "rawgat-st"


def test_a_non_rawgat_state_dict_gets_a_clear_error(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pth = tmp_path / "aasist.pth"
    torch.save(AASIST(TINY_AASIST).state_dict(), pth)
    with pytest.raises(ValueError, match=r"not a RawGAT-ST state dict \(an AASIST checkpoint"):
        load_checkpoint(pth)
    with pytest.raises(ModelError, match=r"aasist.pth: cannot load as a RawGAT-ST checkpoint"):
        load_plan(pth)
    assert guess_family(pth) == "aasist"


# --- the published checkpoint ----------------------------------------------------------------


@pytest.fixture(scope="module")
def published(shared_dir: Path) -> RawGatST:
    return load_checkpoint(shared_dir / "models" / PTH)


def test_published_checkpoint_loads_strictly_with_and_without_its_yaml(
    published: RawGatST, shared_dir: Path
) -> None:
    state = torch.load(shared_dir / "models" / PTH, map_location="cpu", weights_only=True)
    assert set(published.state_dict()) == set(state)  # every key used, none left out
    assert "inferred from shapes" in published.config_source
    assert infer_config(state) == {**PUBLISHED_CONFIG}
    with_yaml = load_checkpoint(shared_dir / "models" / PTH, shared_dir / "models" / YAML)
    assert with_yaml.config == published.config
    assert guess_family(shared_dir / "models" / PTH) == "rawgat-st"


def test_sinc_filterbank_is_the_reference_one(published: RawGatST, shared_dir: Path) -> None:
    """RawGAT-ST's sinc layer is the same computation as AASIST's (mel-spaced edges, 129 taps,
    Hamming window), so the original's filterbank in reference/ holds for it too."""
    ref = np.load(shared_dir / "models" / "reference" / "aasist_sinc_bandpass_70x129.npy")
    np.testing.assert_allclose(published.conv_time.filters[:, 0].numpy(), ref, rtol=0, atol=4e-9)


@pytest.mark.slow
def test_published_checkpoint_reproduces_the_original_logits(
    published: RawGatST, aasist_reference: AasistReference
) -> None:
    inputs = aasist_reference.npz | aasist_synthetic_inputs()
    names = list(ORIGINAL_LOGITS)
    with torch.inference_mode():
        got = published(torch.from_numpy(np.stack([inputs[n] for n in names]))).numpy()
    want = np.array([ORIGINAL_LOGITS[n] for n in names])
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
