"""Checkpoint to model contract: ONNX graph (raw 16 kHz waveform in, logits out) + manifest.

Every export is verified against the original PyTorch pipeline on noise and speech-like audio at
several lengths and batch sizes; a graph that does not match is deleted, never installed.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamd.errors import ModelError
from streamd.export.probe_audio import probe_batch
from streamd.model.manifest import Manifest, WindowSpec, sha256_file, write_manifest

log = logging.getLogger("streamd.export")

INPUT_NAME = "waveform"
OUTPUT_NAME = "logits"


@dataclass
class ExportPlan:
    """What a family module hands the exporter. ``module`` maps waveform [B, T] to logits [B, L]."""

    module: Any  # torch.nn.Module
    family: str
    labels: list[str]
    fake_index: int | list[int]
    window: WindowSpec
    source: str
    license: str = "unknown"
    activation: str = "softmax"
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # The original pipeline (its own preprocessing + model) on a float32 batch -> logits.
    # Defaults to the module itself.
    reference: Callable[[np.ndarray], np.ndarray] | None = None
    atol: float = 1e-4
    rtol: float = 1e-4
    fixed_length: bool = False


@dataclass
class ExportResult:
    manifest_path: Path
    onnx_path: Path
    max_diff: float
    seconds: float
    size_bytes: int
    variant_diffs: dict[str, float]


def _torch_reference(plan: ExportPlan) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    if plan.reference is not None:
        return plan.reference

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits: torch.Tensor = plan.module(torch.from_numpy(batch))
        return logits.float().numpy()

    return run


def verify_lengths(window: WindowSpec) -> list[int]:
    lo, hi = round(window.min_s * 16000), round(window.max_s * 16000)
    odd = (lo + hi) // 2 + 7
    return sorted({lo, odd, hi})


def onnx_logits(onnx_path: Path, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run([OUTPUT_NAME], {INPUT_NAME: batch})[0])


def compare(
    onnx_path: Path,
    reference: Callable[[np.ndarray], np.ndarray],
    batches: list[np.ndarray],
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> tuple[float, float]:
    """(max abs diff, worst diff / tolerance) of ONNX vs the reference; a ratio over 1 fails."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    worst_ratio = 0.0
    for batch in batches:
        ref = np.asarray(reference(batch), dtype=np.float64)
        got = np.asarray(sess.run([OUTPUT_NAME], {INPUT_NAME: batch})[0], dtype=np.float64)
        if got.shape != ref.shape:
            raise ModelError(f"ONNX output shape {got.shape} differs from PyTorch {ref.shape}")
        if not np.all(np.isfinite(got)):
            raise ModelError("ONNX output has NaN or inf")
        diff = np.abs(got - ref)
        worst = max(worst, float(diff.max()))
        worst_ratio = max(worst_ratio, float((diff / (atol + rtol * np.abs(ref))).max()))
    return worst, worst_ratio


def export_plan(
    plan: ExportPlan,
    out_dir: str | Path,
    name: str,
    int8: bool = False,
    fp16: bool = False,
    opset: int = 17,
    extra_batches: list[np.ndarray] | None = None,
    say: Callable[[str], None] = print,
) -> ExportResult:
    import torch

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / f"{name}.onnx"
    tmp_path = out / f".{name}.fp32.onnx"
    module = plan.module.eval()
    lengths = verify_lengths(plan.window)
    dummy = torch.from_numpy(probe_batch([lengths[-1]])[0])
    say(f"exporting {plan.family} to ONNX (opset {opset}) ...")
    dynamic = {INPUT_NAME: {0: "batch", 1: "samples"}, OUTPUT_NAME: {0: "batch"}}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
        torch.onnx.export(
            module,
            (dummy,),
            str(tmp_path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    batches = probe_batch(lengths) + list(extra_batches or [])
    batches.append(probe_batch([lengths[0]], seed=9)[0][:1])  # batch of one
    reference = _torch_reference(plan)
    say(f"verifying ONNX against PyTorch on {len(batches)} batches (lengths {lengths} samples) ...")
    max_diff, ratio = compare(tmp_path, reference, batches, plan.atol, plan.rtol)
    say(f"max |ONNX - PyTorch| logit difference: {max_diff:.3g}")
    if ratio > 1.0:
        tmp_path.unlink(missing_ok=True)
        raise ModelError(
            "exported graph does not match PyTorch (max logit "
            f"difference {max_diff:.3g}); model not written"
        )
    variant_diffs: dict[str, float] = {}
    final = tmp_path
    precision = "fp32"
    if int8:
        final = _quantize_int8(tmp_path, out / f".{name}.int8.onnx")
        precision = "int8"
    elif fp16:
        final = _to_fp16(tmp_path, out / f".{name}.fp16.onnx")
        precision = "fp16"
    if final is not tmp_path:
        d, _ = compare(final, reference, batches)
        variant_diffs[precision] = d
        say(f"{precision}: max logit difference to PyTorch fp32 {d:.3g} (expected for {precision})")
        tmp_path.unlink(missing_ok=True)
    final.replace(onnx_path)
    export_info: dict[str, Any] = {
        "max_abs_diff_vs_torch": float(f"{max_diff:.3g}"),
        "opset": opset,
    }
    export_info.update({f"{k}_max_abs_diff": float(f"{v:.3g}") for k, v in variant_diffs.items()})
    manifest = Manifest.model_validate(
        {
            "name": name,
            "family": plan.family,
            "onnx": onnx_path.name,
            "sha256": sha256_file(onnx_path),
            "sample_rate": 16000,
            "window": plan.window.model_dump(),
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
            "labels": plan.labels,
            "fake_index": plan.fake_index,
            "activation": plan.activation,
            "threshold": plan.threshold,
            "source": plan.source,
            "license": plan.license,
            "metrics": plan.metrics,
            "fixed_length": plan.fixed_length,
            "precision": precision,
            "export": export_info,
            **plan.extra,
        }
    )
    manifest_path = out / f"{name}.yaml"
    write_manifest(manifest, manifest_path)
    seconds = time.perf_counter() - t0
    size = onnx_path.stat().st_size
    say(
        f"wrote {onnx_path} ({size / 1e6:.1f} MB, "
        f"{precision}) and {manifest_path} in {seconds:.1f} s"
    )
    return ExportResult(manifest_path, onnx_path, max_diff, seconds, size, variant_diffs)


def _quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 on MatMul/Gemm only: Conv would become ConvInteger, which is slower on CPU."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8
    )
    return dst


def _to_fp16(src: Path, dst: Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return dst
