"""Family ``ast``: Hugging Face ``ASTForAudioClassification`` with its feature extractor in the
graph.

``ASTFeatureExtractor`` computes Kaldi-style log-mel filter banks (25 ms frames every 10 ms with
no padding at the edges, per-frame DC removal, pre-emphasis 0.97, a symmetric Hann window, a
512-point power spectrum, triangular filters on Kaldi's mel scale from 20 Hz to Nyquist, log with
a float32-epsilon floor), pads or cuts them to ``max_length`` frames and normalizes with the
extractor's mean and std. All of it is linear algebra up to the power and the log, so it goes in
the graph: one strided convolution whose kernels are pre-emphasis, window and DFT folded
together, a mean pool for the DC offset, and a matrix of mel weights.

The label order is whatever the checkpoint's ``id2label`` says (the known deepfake AST
checkpoint has 0 = fake, 1 = real): it is read from the config or ``--fake-index``, never assumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamd.errors import UsageError
from streamd.export.common import (
    CARD_LICENSE,
    SR,
    extractor_reference,
    fit_length,
    load_or_fail,
    open_hf_card,
)
from streamd.export.export import ExportPlan
from streamd.export.hf import from_pretrained, offline_quiet
from streamd.model.manifest import WindowSpec

FAMILY = "ast"
ARCHITECTURE = "ASTForAudioClassification"
FRAME, HOP, NFFT = 400, 160, 512  # 25 ms, 10 ms, next power of two
PREEMPH = 0.97
LOW_HZ = 20.0
LOG_FLOOR = float(np.finfo(np.float32).eps)  # Kaldi's log floor, also the extractor's mel_floor


def kaldi_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def kaldi_mel_banks(
    n_mels: int, n_fft: int = NFFT, sr: int = SR, low: float = LOW_HZ, high: float = SR / 2
) -> np.ndarray:
    """[n_fft/2 + 1, n_mels] triangles equally spaced on Kaldi's mel scale; Nyquist gets no
    weight."""
    bins = kaldi_mel(np.arange(n_fft // 2) * sr / n_fft)
    lo, hi = kaldi_mel(low), kaldi_mel(high)
    step = (hi - lo) / (n_mels + 1)
    left = lo + step * np.arange(n_mels)
    center, right = left + step, left + 2 * step
    up = (bins[None, :] - left[:, None]) / (center - left)[:, None]
    down = (right[:, None] - bins[None, :]) / (right - center)[:, None]
    banks = np.clip(np.minimum(up, down), 0.0, None)
    return np.pad(banks, ((0, 0), (0, 1))).T


def frame_kernels(frame: int = FRAME, n_fft: int = NFFT, preemph: float = PREEMPH) -> np.ndarray:
    """[2 * (n_fft/2 + 1), frame]: real and imaginary DFT rows of the pre-emphasized, windowed
    frame."""
    pre = np.eye(frame) - preemph * np.eye(frame, k=-1)
    pre[0, 0] = 1.0 - preemph  # Kaldi's first sample is emphasized against itself
    window = np.hanning(frame)  # symmetric Hann: the extractor's window, not Kaldi's default povey
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(frame)[None, :]
    dft = np.concatenate([np.cos(2 * np.pi * k * n / n_fft), -np.sin(2 * np.pi * k * n / n_fft)])
    return dft @ (window[:, None] * pre)


class KaldiFbankFeatures(nn.Module):
    """Waveform [B, T] -> the extractor's normalized log-mel input_values
    [B, max_length, n_mels]."""

    kernels: torch.Tensor
    dc: torch.Tensor
    mel: torch.Tensor

    def __init__(
        self, n_mels: int, max_frames: int, mean: float, std: float, normalize: bool
    ) -> None:
        super().__init__()
        kernels = frame_kernels()
        self.register_buffer("kernels", torch.tensor(kernels[:, None, :], dtype=torch.float32))
        # Removing a frame's mean m before the linear map equals subtracting m * (row sums).
        self.register_buffer(
            "dc", torch.tensor(kernels.sum(axis=1)[None, :, None], dtype=torch.float32)
        )
        self.register_buffer("mel", torch.tensor(kaldi_mel_banks(n_mels), dtype=torch.float32))
        self.bins = NFFT // 2 + 1
        self.max_frames = max_frames
        self.mean, self.scale = mean, 2.0 * std  # the extractor divides by twice the std
        self.normalize = normalize

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform.unsqueeze(1)
        spec = F.conv1d(x, self.kernels, stride=HOP) - F.avg_pool1d(x, FRAME, HOP) * self.dc
        power = spec[:, : self.bins] ** 2 + spec[:, self.bins :] ** 2
        logmel = torch.log(
            torch.clamp(torch.matmul(power.transpose(1, 2), self.mel), min=LOG_FLOOR)
        )
        feats = fit_length(logmel, self.max_frames, dim=1)
        return (feats - self.mean) / self.scale if self.normalize else feats


class AstWindow(nn.Module):
    def __init__(self, features: KaldiFbankFeatures, model: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.model = model

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_values=self.features(waveform)).logits
        return logits


def feature_extractor(folder: Path, config: dict[str, Any]) -> Any:
    """The card's own extractor: its preprocessor_config.json, else the class defaults sized to the
    model."""
    from transformers import ASTFeatureExtractor

    offline_quiet()
    if (folder / "preprocessor_config.json").exists():
        fe = load_or_fail(
            f"{folder}/preprocessor_config.json",
            lambda: ASTFeatureExtractor.from_pretrained(str(folder)),
        )
    else:
        fe = ASTFeatureExtractor(  # type: ignore[no-untyped-call]
            max_length=config.get("max_length", 1024), num_mel_bins=config.get("num_mel_bins", 128)
        )
    if fe.max_length != config.get("max_length", 1024) or fe.num_mel_bins != config.get(
        "num_mel_bins", 128
    ):
        raise UsageError(
            f"{folder}: the feature extractor makes {fe.max_length}x{fe.num_mel_bins} features, "
            f"the model expects {config.get('max_length')}x{config.get('num_mel_bins')}"
        )
    if fe.sampling_rate != SR:
        raise UsageError(
            f"{folder}: feature extractor sampling_rate "
            f"{fe.sampling_rate}, the model contract is {SR}"
        )
    return fe


def load_plan(
    source: Path,
    fake_index: int | list[int] | None = None,
    window_min_s: float = 2.5,
    window_max_s: float = 4.0,
    source_url: str | None = None,
    license: str | None = None,
    **_: Any,
) -> ExportPlan:
    card = open_hf_card(source, (ARCHITECTURE,), FAMILY, fake_index)
    fe = feature_extractor(source, card.config)
    longest = (FRAME + (fe.max_length - 1) * HOP) / SR
    if window_max_s > longest:
        raise UsageError(
            f"--window-max {window_max_s}: the model sees at "
            f"most {fe.max_length} frames ({longest:.2f} s)"
        )
    from transformers import ASTForAudioClassification

    model = from_pretrained(ASTForAudioClassification, source, attn_implementation="eager")
    features = KaldiFbankFeatures(
        fe.num_mel_bins, fe.max_length, float(fe.mean), float(fe.std), bool(fe.do_normalize)
    )
    return ExportPlan(
        module=AstWindow(features, model).eval(),
        family=FAMILY,
        labels=card.labels,
        fake_index=card.fake_index,
        window=WindowSpec(min_s=window_min_s, max_s=window_max_s, pad="zero"),
        source=card.source(source_url),
        license=license or CARD_LICENSE,
        reference=extractor_reference(fe, model),  # numpy, or torchaudio where installed
        atol=1e-3,  # float32 spectra in the graph vs float64 numpy in the extractor
        extra={
            "architecture": ARCHITECTURE,
            "features": {
                "kind": "kaldi fbank (ASTFeatureExtractor)",
                "frame_length": FRAME,
                "hop_length": HOP,
                "fft_length": NFFT,
                "window": "hann (symmetric)",
                "preemphasis": PREEMPH,
                "remove_dc_offset": True,
                "dither": 0.0,
                "mel_scale": "kaldi",
                "f_min": LOW_HZ,
                "f_max": SR / 2,
                "num_mel_bins": fe.num_mel_bins,
                "log_floor": LOG_FLOOR,
                "max_length": fe.max_length,
                "do_normalize": bool(fe.do_normalize),
                "mean": float(fe.mean),
                "std": float(fe.std),
            },
        },
    )
