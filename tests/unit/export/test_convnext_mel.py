"""Family convnext-mel: ConvNeXt on mel-spectrogram pictures, the picture recipe inside the graph.

Neither Pillow nor torchvision is installed here, so the card-side reference is written in this
file from other code: transformers' librosa-compatible spectrogram for the mel, and torch's
antialiased interpolate (documented to follow Pillow's filters) for every resize.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from tests.helpers.families import (
    SR,
    Reference,
    assert_detector_matches,
    assert_score_matches,
    card_reference,
    export_args,
    export_cli,
    speech_windows,
)

# What facebook/convnext-tiny-224 and its fine-tunes ship.
PROCESSOR = {
    "crop_pct": 0.875,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "image_processor_type": "ConvNextImageProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
}


def save_tiny_convnext(folder: Path, id2label: dict[int, str] | None = None, seed: int = 0) -> Path:
    from transformers import ConvNextConfig, ConvNextForImageClassification

    torch.manual_seed(seed)
    labels = id2label or {0: "bonafide", 1: "spoof"}
    cfg = ConvNextConfig(
        hidden_sizes=[8, 16, 24, 32],
        depths=[1, 1, 1, 1],
        image_size=224,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    cfg.architectures = ["ConvNextForImageClassification"]
    model = ConvNextForImageClassification(cfg)
    with torch.no_grad():
        model.classifier.weight.mul_(5)  # scores spread, not saturated
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    return folder


def pil_resize(img: np.ndarray, h: int, w: int, kind: str) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    return torch.nn.functional.interpolate(
        t, size=(h, w), mode=kind, antialias=True, align_corners=False
    )[0, 0].numpy()


def card_pixels(batch: np.ndarray, crop_pct: float = 0.875) -> np.ndarray:
    """librosa-style mel dB picture, 224x224 bicubic, then ConvNextImageProcessor's steps."""
    from transformers.audio_utils import mel_filter_bank, power_to_db, spectrogram, window_function

    mel = mel_filter_bank(
        num_frequency_bins=1025,
        num_mel_filters=128,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=SR,
        norm="slaney",
        mel_scale="slaney",
    )
    out = []
    for row in batch:
        x = np.zeros(2 * SR)
        x[: min(len(row), 2 * SR)] = row[: 2 * SR]
        s = spectrogram(
            x,
            window_function(2048, "hann"),
            frame_length=2048,
            hop_length=512,
            power=2.0,
            center=True,
            pad_mode="constant",
            mel_filters=mel,
        )
        db = power_to_db(s, reference=float(s.max()), db_range=80.0)
        pic = np.flipud((db - db.min()) / (db.max() - db.min()) * 255.0)
        pic = pil_resize(pic, 224, 224, "bicubic")
        r = int(224 / crop_pct)
        pic = pil_resize(pic, r, r, "bicubic")
        top = (r - 224) // 2
        pic = pic[top : top + 224, top : top + 224] / 255.0
        mean, std = np.array(PROCESSOR["image_mean"]), np.array(PROCESSOR["image_std"])
        out.append((pic[None] - mean[:, None, None]) / std[:, None, None])
    return np.stack(out).astype(np.float32)


def card_p_fake(folder: Path, fake: int = 1) -> Reference:
    from transformers import ConvNextForImageClassification

    model = ConvNextForImageClassification.from_pretrained(folder)  # in eval mode
    return card_reference(
        lambda batch: model(pixel_values=torch.from_numpy(card_pixels(batch))).logits, fake
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("convnext")
    ckpt = save_tiny_convnext(root / "ckpt")
    return ckpt, export_cli(ckpt, root / "models", "cnx")


@pytest.mark.parametrize("kind", ["bilinear", "bicubic"])
@pytest.mark.parametrize(("n_in", "n_out"), [(63, 224), (224, 256), (256, 100), (128, 224)])
def test_resample_weights_follow_pillow(kind: str, n_in: int, n_out: int) -> None:
    from streamd.export.convnext_mel import resample_matrix

    img = np.random.default_rng(n_in).uniform(0, 255, (n_in, 9))
    ours = resample_matrix(n_in, n_out, kind) @ img
    assert np.abs(ours - pil_resize(img, n_out, 9, kind)).max() < 1e-3


def test_manifest_records_the_recipe(exported: tuple[Path, Path]) -> None:
    import yaml

    m = yaml.safe_load(exported[1].read_text())
    assert m["window"] == {"min_s": 2.0, "max_s": 2.0, "pad": "zero"} and m["fixed_length"] is True
    recipe = m["mel_image"]
    assert (
        recipe["n_mels"] == 128 and recipe["crop_pct"] == 0.875 and recipe["resample"] == "bicubic"
    )
    assert recipe["image_mean"] == PROCESSOR["image_mean"] and m["fake_index"] == 1


def test_graph_pixels_match_the_card_recipe(speech_16k: np.ndarray) -> None:
    from streamd.export.convnext_mel import MelImage, MelImageRecipe

    batch = np.stack(speech_windows(speech_16k, [2 * SR, 2 * SR]))
    want = card_pixels(batch)
    got = MelImage(MelImageRecipe.build(PROCESSOR, {}), 3)(torch.from_numpy(batch)).numpy()
    assert got.shape == want.shape == (2, 3, 224, 224)
    assert np.abs(got - want).max() < 1e-3


def test_parity_on_real_speech_several_lengths(
    exported: tuple[Path, Path], speech_16k: np.ndarray
) -> None:
    ckpt, manifest = exported
    windows = speech_windows(speech_16k, [2 * SR, 2 * SR, 40000, 64000], offset=1234)
    assert_detector_matches(manifest, card_p_fake(ckpt), windows)
    p = card_p_fake(ckpt)(np.stack(windows[:2]))
    assert np.all((p > 0.001) & (p < 0.999))  # not a comparison of saturated scores


@pytest.mark.slow
def test_score_whole_file_matches_card(
    exported: tuple[Path, Path], speech_16k: np.ndarray, tmp_path: Path
) -> None:
    ckpt, manifest = exported
    assert_score_matches(manifest, speech_16k, card_p_fake(ckpt), tmp_path)


@pytest.mark.slow
def test_recipe_overrides_from_config(
    tmp_path: Path, speech_16k: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamd.cli import main

    ckpt = save_tiny_convnext(tmp_path / "ckpt", {0: "real", 1: "fake"}, seed=2)
    (tmp_path / "bad.json").write_text(json.dumps({"nmels": 64}))
    args = export_args(ckpt, tmp_path / "m", "c")
    assert main([*args, "--config", str(tmp_path / "bad.json")]) == 2
    assert "nmels" in capsys.readouterr().err
    (tmp_path / "r.json").write_text(json.dumps({"crop_pct": 1.0}))
    manifest = export_cli(ckpt, tmp_path / "m", "c", "--config", str(tmp_path / "r.json"))
    ref = card_p_fake(ckpt)
    from transformers import ConvNextForImageClassification

    model = ConvNextForImageClassification.from_pretrained(ckpt)  # in eval mode
    no_crop = card_reference(
        lambda batch: model(pixel_values=torch.from_numpy(card_pixels(batch, 1.0))).logits, 1
    )

    windows = speech_windows(speech_16k, [2 * SR, 2 * SR])
    assert_detector_matches(manifest, no_crop, windows)
    assert (
        np.abs(no_crop(np.stack(windows)) - ref(np.stack(windows))).max() > 0
    )  # the override did something
    assert (
        main(["models", "verify", "c", "--models-dir", str(tmp_path / "m")]) == 0
    )  # replays --config
