"""What the model-family tests share: export through the CLI, parity on real speech, whole-file
scoring."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamd.model.session import Detector

SR = 16000
Reference = Callable[[np.ndarray], np.ndarray]  # float32 [B, T] -> p_fake [B], by the card's code


def export_args(source: Path, models: Path, name: str, *extra: str) -> list[str]:
    """The argv of ``streamd models export`` as a user types it."""
    return [
        "models",
        "export",
        "--from",
        str(source),
        "--name",
        name,
        "--models-dir",
        str(models),
        *extra,
    ]


def export_cli(source: Path, models: Path, name: str, *extra: str) -> Path:
    """``streamd models export`` exactly as a user types it; returns the manifest path."""
    from streamd.cli import main

    rc = main(export_args(source, models, name, *extra))
    assert rc == 0, f"export of {source} failed with exit code {rc}"
    return models / f"{name}.yaml"


def detector(manifest: Path) -> Detector:

    return Detector.load(manifest, providers=["cpu"])


def speech_windows(speech: np.ndarray, lengths: list[int], offset: int = 0) -> list[np.ndarray]:
    """Real-speech windows of the given lengths, taken at staggered offsets."""
    out = []
    for i, n in enumerate(lengths):
        start = (offset + i * 7919) % max(1, len(speech) - n)
        out.append(np.ascontiguousarray(speech[start : start + n], dtype=np.float32))
    return out


def assert_detector_matches(
    manifest: Path,
    reference: Reference,
    windows: list[np.ndarray],
    batch: int = 2,
    atol: float = 1e-4,
) -> float:
    """p_fake of the installed model (onnxruntime, streamd's own code) vs the card's pipeline."""
    det = detector(manifest)
    worst = 0.0
    by_len: dict[int, list[np.ndarray]] = {}
    for w in windows:
        by_len.setdefault(len(w), []).append(w)
    for group in by_len.values():
        for i in range(0, len(group), batch):
            rows = np.stack(group[i : i + batch])
            got, _ = det.score_windows(list(rows))
            want = np.asarray(reference(rows), dtype=np.float64)
            worst = max(worst, float(np.abs(got - want).max()))
    assert worst <= atol, f"p_fake differs from the original pipeline by {worst:.3g}"
    return worst


def assert_score_matches(
    manifest: Path, speech: np.ndarray, reference: Reference, tmp: Path, atol: float = 1e-4
) -> int:
    """``streamd score`` on a whole file gives, window by window, the card pipeline's p_fake.

    Only windows whose stream-time span equals the samples scored are checked: there the window
    is ``audio[start:end]`` exactly (no VAD gap inside), so the card's code can see the same
    samples.
    """
    import soundfile as sf

    from streamd.app.daemon import load_detector
    from streamd.config import load_config
    from streamd.offline.score import score_files

    wav = tmp / "speech.wav"
    sf.write(wav, speech, SR, subtype="FLOAT")
    cfg = load_config(None)
    cfg.model.dir = str(manifest.parent)
    cfg.model.name = manifest.stem
    cfg.model.providers = ["cpu"]
    det = load_detector(cfg)
    report = score_files([wav], cfg, det)[0]
    assert report.error is None and report.windows, report
    from streamd.pipeline.hub import fit_windows

    length = round(fit_windows(cfg, det)[0] * SR)  # the model's own window when it is shorter
    checked = 0
    for ev in report.windows:
        a, b = round(ev["window"]["start_s"] * SR), round(ev["window"]["end_s"] * SR)
        if b - a != length:
            continue
        samples = det.prepare(speech[a:b])
        want = float(np.asarray(reference(samples[None]))[0])
        assert abs(ev["score"] - want) <= atol, (
            f"window {a / SR:.2f}-{b / SR:.2f} s: score {ev['score']} vs card {want}"
        )
        checked += 1
    assert checked >= 2, f"only {checked} contiguous windows in {len(report.windows)}"
    return checked


def card_reference(logits_of: Callable[[np.ndarray], Any], fake: int | list[int]) -> Reference:
    """The card's p_fake: its own forward pass (without autograd), then softmax over the outputs."""
    import torch

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return softmax_p(logits_of(batch).numpy(), fake)

    return run


def extractor_card_reference(
    folder: Path, extractor_cls: Any, model_cls: Any, fake: int | list[int]
) -> Reference:
    """The card's code for a Hugging Face folder: its feature extractor, its classifier, softmax."""
    fe = extractor_cls.from_pretrained(folder)
    model = model_cls.from_pretrained(folder).eval()
    return card_reference(
        lambda batch: model(**fe(list(batch), sampling_rate=SR, return_tensors="pt")).logits, fake
    )


def softmax_p(logits: np.ndarray, fake: int | list[int]) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    idx = fake if isinstance(fake, list) else [fake]
    return np.asarray(p[:, idx].sum(axis=1))


# --- AASIST: the published checkpoints and the original implementation's outputs in ../shared ---

AASIST_CHECKPOINTS = {
    # name: (checkpoint, conf) under shared/models; AASIST-L is loaded without its conf on purpose
    "aasist-l": ("aasist/AASIST-L.pth", None),
    "aasist": ("aasist/AASIST.pth", "aasist/AASIST.conf"),
    "aasist-asvspoof5": (
        "aasist-asvspoof5/AASIST-asvspoof5.pth",
        "aasist-asvspoof5/AASIST_ASVspoof5.conf",
    ),
}
AASIST_SAMPLES = 64600


def aasist_synthetic_inputs() -> dict[str, np.ndarray]:
    """The two synthetic inputs as the reference README describes them."""
    sine = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(AASIST_SAMPLES) / SR)
    return {
        "synthetic:zeros": np.zeros(AASIST_SAMPLES, dtype=np.float32),
        "synthetic:sine440": sine.astype(np.float32),
    }


@dataclass(frozen=True)
class AasistReference:
    """The original implementation's inputs (npz) and logits (csv: model, clip -> 2 logits)."""

    npz: dict[str, np.ndarray]
    logits: dict[str, dict[str, np.ndarray]]

    @property
    def clips(self) -> dict[str, np.ndarray]:
        """The real clips, without the synthetic inputs."""
        return {n: x for n, x in self.npz.items() if not n.startswith("synthetic:")}

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        """Every input, the synthetic ones made by our recipe."""
        return self.npz | aasist_synthetic_inputs()


def load_aasist_reference(shared_dir: Path) -> AasistReference:
    ref = shared_dir / "models" / "reference"
    data = np.load(ref / "aasist_reference_inputs.npz")
    npz = {str(n): x for n, x in zip(data["names"], data["x"], strict=True)}
    logits: dict[str, dict[str, np.ndarray]] = {}
    with open(ref / "aasist_reference_logits.csv", newline="") as f:
        for row in csv.DictReader(f):
            logits.setdefault(row["model"], {})[row["clip"]] = np.array(
                [float(row["logit0"]), float(row["logit1"])]
            )
    return AasistReference(npz, logits)
