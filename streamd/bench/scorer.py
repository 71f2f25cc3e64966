"""``streamd bench scorer``: windows/s and per-window latency of the batched ONNX scorer.

With ``--arch wav2vec2-base`` it builds a full-size wav2vec2-base classifier with random weights,
exports it (fp32 and int8) and compares, in the same run, with the plain per-window PyTorch loop
a model-card user would write. With ``--model NAME`` it measures an installed model.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def register(sub: Any) -> None:
    p = sub.add_parser(
        "scorer", help="scorer windows/s and latency at several batch sizes", description=__doc__
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--arch",
        choices=["wav2vec2-base"],
        default=None,
        help="build this architecture with random weights (needs the export extra)",
    )
    g.add_argument("--model", help="an installed model name")
    g.add_argument(
        "--from",
        dest="checkpoint",
        metavar="PATH",
        help="a checkpoint to export and compare with its PyTorch module (with --family)",
    )
    p.add_argument("--family", help="family of --from (default: guessed)")
    p.add_argument("--models-dir", default="models")
    p.add_argument("--batches", default="1,8,32", help="batch sizes (default 1,8,32)")
    p.add_argument("--windows", type=int, default=64, help="windows per measurement (default 64)")
    p.add_argument("--window-s", type=float, default=4.0)
    p.add_argument(
        "--torch-windows", type=int, default=16, help="windows for the PyTorch loop (default 16)"
    )
    p.add_argument(
        "--max-seconds", type=float, default=120, help="stop a measurement after this long"
    )
    p.set_defaults(func=run)


def machine() -> str:
    return (
        f"{platform.machine()} {os.cpu_count()} cores, "
        f"{platform.processor() or platform.platform()}"
    )


async def _through_scorer(
    detector: Any, batch: int, windows: list[np.ndarray], max_s: float
) -> dict[str, float]:
    from streamd.pipeline.scorer import Scorer

    scorer = Scorer(detector, batch_max=batch, batch_wait_ms=5)
    await scorer.start()
    detector.score_windows(windows[:1])  # warm-up
    t0 = time.perf_counter()
    futs = []
    for w in windows:
        futs.append(scorer.submit(w))
        if time.perf_counter() - t0 > max_s:
            break
    results = [await f for f in futs]
    wall = time.perf_counter() - t0
    await scorer.close()
    return {
        "windows_per_s": len(results) / wall,
        "infer_ms_per_window": 1000 * statistics.mean(r.infer_s / r.batch_size for r in results),
        "batch_latency_ms": 1000 * statistics.median(r.infer_s for r in results),
        "mean_batch": statistics.mean(r.batch_size for r in results),
    }


def measure_detector(
    detector: Any, batches: list[int], n: int, seconds: float, max_s: float
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    windows = [
        (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32) for _ in range(n)
    ]
    return [
        {"batch": b, **asyncio.run(_through_scorer(detector, b, windows, max_s))} for b in batches
    ]


def torch_loop(
    module: Any, n: int, seconds: float, max_s: float, batch: int = 1
) -> dict[str, float]:
    """The plain loop a model-card user writes: ``batch`` windows at a time through PyTorch."""
    import torch

    rng = np.random.default_rng(0)
    x = torch.from_numpy(
        (0.1 * rng.standard_normal((batch, int(seconds * 16000)))).astype(np.float32)
    )
    times = []
    with torch.inference_mode():
        module(x)
        t_end = time.perf_counter() + max_s
        for _ in range(max(1, n // batch)):
            t = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - t)
            if time.perf_counter() > t_end:
                break
    per_window = sum(times) / (len(times) * batch)
    return {
        "batch": batch,
        "windows_per_s": 1 / per_window,
        "infer_ms_per_window": 1000 * per_window,
        "batch_latency_ms": 1000 * statistics.median(times),
        "mean_batch": float(batch),
    }


def _row(name: str, r: dict[str, Any], base: float | None) -> str:
    ratio = f"{r['windows_per_s'] / base:5.2f}x" if base else "  1.00x"
    return (
        f"{name:<28} batch {int(r.get('batch', 1)):>3}  {r['windows_per_s']:8.2f} "
        f"windows/s  {r['infer_ms_per_window']:8.1f} ms/window  batch latency "
        f"{r['batch_latency_ms']:8.1f} ms  {ratio}"
    )


def run(args: argparse.Namespace) -> int:
    from streamd.model.manifest import resolve_manifest
    from streamd.model.session import Detector

    batches = [int(b) for b in args.batches.split(",")]
    print(f"machine: {machine()}")
    if args.checkpoint:
        return _checkpoint_run(args, batches)
    if not args.arch:
        det = Detector.load(resolve_manifest(args.models_dir, args.model), ["cuda", "cpu"])
        print(f"model {det.name} on {det.provider}, {args.window_s} s windows")
        for r in measure_detector(det, batches, args.windows, args.window_s, args.max_seconds):
            print(_row(det.name, r, None))
        return 0
    import torch

    from streamd.export.export import export_plan
    from streamd.export.wav2vec2 import build_wav2vec2_base_plan

    torch.set_num_threads(os.cpu_count() or 1)
    plan = build_wav2vec2_base_plan()
    print(
        f"{args.arch}: {sum(p.numel() for p in plan.module.parameters()) / 1e6:.1f} "
        "M parameters (random weights)"
    )
    base = torch_loop(plan.module, args.torch_windows, args.window_s, args.max_seconds)
    print(_row("pytorch per-window loop", base, None))
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "int8"):
            res = export_plan(
                plan, Path(tmp), f"bench-{precision}", int8=precision == "int8", say=lambda s: None
            )
            det = Detector.load(res.manifest_path, ["cuda", "cpu"])
            print(
                f"# onnx {precision}: {res.size_bytes / 1e6:.0f} MB, "
                f"exported in {res.seconds:.0f} s, provider {det.provider}"
            )
            for r in measure_detector(det, batches, args.windows, args.window_s, args.max_seconds):
                print(_row(f"onnx {precision} scorer", r, base["windows_per_s"]))
    return 0


def _checkpoint_run(args: argparse.Namespace, batches: list[int]) -> int:
    """Export a checkpoint to a temp dir and compare ORT with its PyTorch module, batch by batch."""
    import torch

    from streamd.export import family_module, guess_family
    from streamd.export.export import export_plan
    from streamd.model.session import Detector

    torch.set_num_threads(os.cpu_count() or 1)
    source = Path(args.checkpoint)
    family = args.family or guess_family(source)
    plan = family_module(family).load_plan(source)
    print(
        f"{source.name} ({family}): {sum(p.numel() for p in plan.module.parameters()) / 1e6:.3f} M "
        f"parameters, {args.window_s} s windows"
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = export_plan(plan, Path(tmp), "bench", say=lambda s: None)
        det = Detector.load(res.manifest_path, ["cuda", "cpu"])
        for b in batches:
            base = torch_loop(
                plan.module, max(args.torch_windows, b), args.window_s, args.max_seconds, batch=b
            )
            print(_row("pytorch module", base, None))
            for r in measure_detector(
                det, [b], max(args.windows, b), args.window_s, args.max_seconds
            ):
                print(_row(f"onnx scorer ({det.provider})", r, base["windows_per_s"]))
    return 0
