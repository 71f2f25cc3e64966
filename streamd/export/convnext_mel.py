"""Family ``convnext-mel``: ``ConvNextForImageClassification`` on images of mel spectrograms.

Such cards train an image classifier on pictures of 2 s mel spectrograms and publish only the
classifier and its image processor. The picture recipe is not in the checkpoint, so streamd
defines one from what these cards do (librosa defaults, power in dB against the clip's maximum,
min-max to 0..255, low frequencies at the bottom, three equal channels, a 224x224 picture) and
writes every constant to the manifest; ``--config recipe.json`` overrides any of them. The image
processor's own steps (resize the short side to size/crop_pct, center crop, rescale, normalize)
come from the checkpoint's preprocessor_config.json.

Everything after the dB conversion is linear per axis, so the flip, both resizes and the crop fold
into one matrix per axis, with weights that follow Pillow's resampling filters (antialiased
when shrinking). The picture stays in floating point: Pillow would round it to 8 bits between
steps, a difference of at most half a grey level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamd.errors import UsageError
from streamd.export.common import (
    CARD_LICENSE,
    fit_length,
    open_hf_card,
    preprocessor_config,
    read_json_object,
)
from streamd.export.export import ExportPlan
from streamd.export.hf import from_pretrained
from streamd.model.manifest import WindowSpec

FAMILY = "convnext-mel"
SR = 16000
PIL_FILTERS = {2: "bilinear", 3: "bicubic"}  # PIL.Image.Resampling codes in preprocessor configs


@dataclass
class MelImageRecipe:
    """The card-side steps from audio to picture, and the image processor's, with their
    constants."""

    clip_s: float = 2.0
    n_fft: int = 2048  # librosa.feature.melspectrogram defaults from here on
    hop_length: int = 512
    window: str = "hann (periodic)"
    center_pad: str = "constant"
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = SR / 2
    mel_scale: str = "slaney"
    mel_norm: str = "slaney"
    db_amin: float = 1e-10  # librosa.power_to_db(S, ref=np.max), top_db=80
    db_top: float = 80.0
    flip_frequency: bool = True  # low frequencies at the bottom, as rendered pictures have them
    image_size: int = 224
    image_resample: str = "bicubic"  # Pillow's Image.resize default
    # the image processor (preprocessor_config.json)
    do_resize: bool = True
    shortest_edge: int = 224
    crop_pct: float = 0.875
    resample: str = "bicubic"
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    image_std: tuple[float, ...] = (0.229, 0.224, 0.225)

    @property
    def samples(self) -> int:
        return round(self.clip_s * SR)

    @property
    def frames(self) -> int:
        return 1 + self.samples // self.hop_length

    @classmethod
    def build(cls, processor: dict[str, Any], overrides: dict[str, Any]) -> MelImageRecipe:
        kw: dict[str, Any] = {}
        size = processor.get("size", {})
        size = size if isinstance(size, dict) else {"shortest_edge": size}
        if "shortest_edge" in size:
            kw["shortest_edge"] = int(size["shortest_edge"])
        for key in ("do_resize", "crop_pct", "do_rescale", "rescale_factor", "do_normalize"):
            if key in processor:
                kw[key] = processor[key]
        for key in ("image_mean", "image_std"):
            if key in processor:
                kw[key] = tuple(processor[key])
        if "resample" in processor:
            if processor["resample"] not in PIL_FILTERS:
                raise UsageError(
                    "preprocessor_config.json: resample "
                    f"{processor['resample']} is not bilinear (2) or bicubic (3)"
                )
            kw["resample"] = PIL_FILTERS[processor["resample"]]
        known = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise UsageError(f"--config: unknown recipe keys {bad}; known: {sorted(known)}")
        kw.update(overrides)
        return cls(**kw)


def pil_filter(kind: str) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """Pillow's resampling kernels: (kernel, support). Its bicubic uses a = -0.5."""
    if kind == "bilinear":
        return (lambda x: np.clip(1.0 - np.abs(x), 0.0, None)), 1.0
    if kind == "bicubic":

        def cubic(x: np.ndarray) -> np.ndarray:
            a, x = -0.5, np.abs(x)
            near = ((a + 2) * x - (a + 3)) * x * x + 1
            far = (((x - 5) * x + 8) * x - 4) * a
            return np.where(x < 1, near, np.where(x < 2, far, 0.0))

        return cubic, 2.0
    raise UsageError(f"resample {kind!r}: only bilinear and bicubic are supported")


def resample_matrix(n_in: int, n_out: int, kind: str) -> np.ndarray:
    """[n_out, n_in] weights of Pillow's separable resize along one axis (widened when
    shrinking)."""
    kernel, support = pil_filter(kind)
    scale = n_in / n_out
    widen = max(scale, 1.0)
    out = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support * widen + 0.5), 0)
        hi = min(int(center + support * widen + 0.5), n_in)
        w = kernel((np.arange(lo, hi) - center + 0.5) / widen)
        out[i, lo:hi] = w / w.sum()
    return out


def processor_steps(recipe: MelImageRecipe, n: int) -> list[tuple[str, Any]]:
    """The image processor's geometry on a square n x n picture: ConvNeXt's crop_pct rule."""
    if not recipe.do_resize:
        return []
    s = recipe.shortest_edge
    if s < 384:
        r = int(s / recipe.crop_pct)
        top = (r - s) // 2
        return [("resize", r), ("crop", (top, s))]
    return [("resize", s)]


def axis_matrix(recipe: MelImageRecipe, n_in: int, flip: bool) -> np.ndarray:
    """One axis of flip -> picture resize -> processor resize/crop, composed into one matrix."""
    m = np.eye(n_in)[::-1] if flip else np.eye(n_in)
    m = resample_matrix(n_in, recipe.image_size, recipe.image_resample) @ m
    for step, arg in processor_steps(recipe, recipe.image_size):
        if step == "resize":
            m = resample_matrix(m.shape[0], arg, recipe.resample) @ m
        else:
            top, size = arg
            m = m[top : top + size]
    return m


def mel_filters(recipe: MelImageRecipe) -> np.ndarray:
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(
        num_frequency_bins=recipe.n_fft // 2 + 1,
        num_mel_filters=recipe.n_mels,
        min_frequency=recipe.f_min,
        max_frequency=recipe.f_max,
        sampling_rate=SR,
        norm=recipe.mel_norm,
        mel_scale=recipe.mel_scale,
    )


def channel_affine(recipe: MelImageRecipe, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, offset) of rescale + normalize: pixel * scale + offset."""
    rescale = recipe.rescale_factor if recipe.do_rescale else 1.0
    mean = np.broadcast_to(
        np.asarray(recipe.image_mean if recipe.do_normalize else 0.0, dtype=np.float64), (channels,)
    )
    std = np.broadcast_to(
        np.asarray(recipe.image_std if recipe.do_normalize else 1.0, dtype=np.float64), (channels,)
    )
    return rescale / std, -mean / std


class MelImage(nn.Module):
    """Waveform [B, T] -> pixel_values [B, C, S, S], the recipe and processor as tensor ops."""

    kernels: torch.Tensor
    mel: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor

    def __init__(self, recipe: MelImageRecipe, channels: int) -> None:
        super().__init__()
        self.r = recipe
        n = np.arange(recipe.n_fft)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / recipe.n_fft)
        k = np.arange(recipe.n_fft // 2 + 1)[:, None]
        dft = (
            np.concatenate(
                [np.cos(2 * np.pi * k * n / recipe.n_fft), np.sin(2 * np.pi * k * n / recipe.n_fft)]
            )
            * window
        )
        self.register_buffer("kernels", torch.tensor(dft[:, None, :], dtype=torch.float32))
        self.register_buffer("mel", torch.tensor(mel_filters(recipe).T, dtype=torch.float32))
        self.register_buffer(
            "rows",
            torch.tensor(
                axis_matrix(recipe, recipe.n_mels, recipe.flip_frequency), dtype=torch.float32
            ),
        )
        self.register_buffer(
            "cols", torch.tensor(axis_matrix(recipe, recipe.frames, False).T, dtype=torch.float32)
        )
        scale, offset = channel_affine(recipe, channels)
        self.register_buffer("scale", torch.tensor(scale[None, :, None, None], dtype=torch.float32))
        self.register_buffer(
            "offset", torch.tensor(offset[None, :, None, None], dtype=torch.float32)
        )
        self.bins = recipe.n_fft // 2 + 1
        self.channels = channels

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        r = self.r
        x = F.pad(fit_length(waveform, r.samples), (r.n_fft // 2, r.n_fft // 2)).unsqueeze(1)
        spec = F.conv1d(x, self.kernels, stride=r.hop_length)
        power = spec[:, : self.bins] ** 2 + spec[:, self.bins :] ** 2
        db = 10.0 * torch.log10(torch.clamp(torch.matmul(self.mel, power), min=r.db_amin))
        db = db - torch.amax(db, dim=(1, 2), keepdim=True)  # ref = the clip's maximum
        db = torch.maximum(db, torch.full_like(db, -r.db_top))
        lo = torch.amin(db, dim=(1, 2), keepdim=True)
        span = torch.clamp(torch.amax(db, dim=(1, 2), keepdim=True) - lo, min=1e-10)
        picture = (db - lo) / span * 255.0
        pixels = torch.matmul(torch.matmul(self.rows, picture), self.cols).unsqueeze(1)
        return pixels.expand(-1, self.channels, -1, -1) * self.scale + self.offset


class ConvNextMelWindow(nn.Module):
    def __init__(self, recipe: MelImageRecipe, model: nn.Module, channels: int) -> None:
        super().__init__()
        self.image = MelImage(recipe, channels)
        self.model = model

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(pixel_values=self.image(waveform)).logits
        return logits


def reference_pixels(recipe: MelImageRecipe, batch: np.ndarray, channels: int) -> np.ndarray:
    """The recipe step by step in numpy (transformers' librosa-compatible spectrogram), float64."""
    from transformers.audio_utils import power_to_db, spectrogram, window_function

    out = []
    mel = mel_filters(recipe)
    for row in batch:
        x = np.zeros(recipe.samples)
        x[: min(len(row), recipe.samples)] = row[: recipe.samples]
        s = spectrogram(
            x,
            window_function(recipe.n_fft, "hann", periodic=True),
            frame_length=recipe.n_fft,
            hop_length=recipe.hop_length,
            power=2.0,
            center=True,
            pad_mode=recipe.center_pad,
            mel_filters=mel,
            mel_floor=recipe.db_amin,
            dtype=np.dtype(np.float64),
        )
        db = power_to_db(
            s, reference=float(s.max()), min_value=recipe.db_amin, db_range=recipe.db_top
        )
        picture = (db - db.min()) / max(float(db.max() - db.min()), 1e-10) * 255.0
        if recipe.flip_frequency:
            picture = picture[::-1]
        picture = (
            resample_matrix(picture.shape[0], recipe.image_size, recipe.image_resample) @ picture
        )
        picture = (
            picture @ resample_matrix(picture.shape[1], recipe.image_size, recipe.image_resample).T
        )
        for step, arg in processor_steps(recipe, recipe.image_size):
            if step == "resize":
                picture = resample_matrix(picture.shape[0], arg, recipe.resample) @ picture
                picture = picture @ resample_matrix(picture.shape[1], arg, recipe.resample).T
            else:
                top, size = arg
                picture = picture[top : top + size, top : top + size]
        scale, offset = channel_affine(recipe, channels)
        out.append(picture[None] * scale[:, None, None] + offset[:, None, None])
    return np.stack(out).astype(np.float32)


def load_plan(
    source: Path,
    fake_index: int | list[int] | None = None,
    config_path: Path | None = None,
    source_url: str | None = None,
    license: str | None = None,
    **_: Any,
) -> ExportPlan:
    card = open_hf_card(source, ("ConvNextForImageClassification",), FAMILY, fake_index)
    overrides = read_json_object(config_path) if config_path is not None else {}
    recipe = MelImageRecipe.build(preprocessor_config(source), overrides)
    channels = int(card.config.get("num_channels", 3))
    for key in ("image_mean", "image_std"):
        if len(getattr(recipe, key)) not in (1, channels):
            raise UsageError(
                f"{source}: {key} has "
                f"{len(getattr(recipe, key))} values for a {channels}-channel model"
            )
    from transformers import ConvNextForImageClassification

    model = from_pretrained(ConvNextForImageClassification, source)

    def reference(batch: np.ndarray) -> np.ndarray:
        pixels = torch.from_numpy(reference_pixels(recipe, batch, channels))
        with torch.inference_mode():
            logits: torch.Tensor = model(pixel_values=pixels).logits
        return logits.float().numpy()

    clip = recipe.clip_s
    return ExportPlan(
        module=ConvNextMelWindow(recipe, model, channels).eval(),
        family=FAMILY,
        labels=card.labels,
        fake_index=card.fake_index,
        window=WindowSpec(min_s=clip, max_s=clip, pad="zero"),
        source=card.source(source_url),
        license=license or CARD_LICENSE,
        reference=reference,
        atol=1e-3,  # float32 spectra and resize in the graph vs float64 numpy
        fixed_length=True,
        extra={"architecture": "ConvNextForImageClassification", "mel_image": asdict(recipe)},
    )
