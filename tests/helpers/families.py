"""What the model-family tests share: export through the CLI, parity on real speech, whole-file scoring."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

SR = 16000
Reference = Callable[
    [np.ndarray], np.ndarray
]  # float32 [B, T] -> p_fake [B], by the card's own code


def tiny_w2v2_config(**over: object):  # type: ignore[no-untyped-def]
    """A tiny wav2vec2-base-shaped config (7 conv layers, base strides, group norm) with overrides."""
    from transformers import Wav2Vec2Config

    kw: dict[str, object] = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 1,
        "intermediate_size": 37,
        "conv_dim": (16,) * 7,
        "conv_stride": (5, 2, 2, 2, 2, 2, 2),
        "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
        "do_stable_layer_norm": False,
        "feat_extract_norm": "group",
        "vocab_size": 12,
    }
    kw.update(over)
    return Wav2Vec2Config(**kw)


def export_cli(source: Path, models: Path, name: str, *extra: str) -> Path:
    """``streamd models export`` exactly as a user types it; returns the manifest path."""
    from streamd.cli import main

    rc = main(
        [
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
    )
    assert rc == 0, f"export of {source} failed with exit code {rc}"
    return models / f"{name}.yaml"


def detector(manifest: Path):  # type: ignore[no-untyped-def]
    from streamd.model.session import Detector

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
    is ``audio[start:end]`` exactly (no VAD gap inside), so the card's code can see the same samples.
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


def softmax_p(logits: np.ndarray, fake: int | list[int]) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    idx = fake if isinstance(fake, list) else [fake]
    return p[:, idx].sum(axis=1)
