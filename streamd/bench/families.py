"""``streamd bench families``: every model family at full size, exported and timed on CPU.

For each family a checkpoint of the real architecture with random weights is saved the way its
cards save it. It is exported to fp32 and int8 through the family's own loader: that means
loading, tracing and verification against the original pipeline. Then the ONNX graphs are timed
against the original PyTorch pipeline, preprocessing included, in the same run. The windows are
4 s, cut to the family's window (convnext-mel: 2 s). Random weights time the same as trained ones.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

WINDOW_S = 4.0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "families",
        help="export time, ONNX size and CPU ms/window of each model family at full size",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--families", help="comma-separated subset (default: all)")
    p.add_argument("--batches", default="1,8", help="batch sizes (default 1,8)")
    p.add_argument(
        "--iters",
        type=int,
        default=3,
        help="timed runs per configuration after one warm-up (default 3)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=30.0,
        help="stop timing a configuration after this long",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per family")
    p.set_defaults(func=run)


def time_ms(fn: Callable[[], Any], iters: int, max_s: float) -> tuple[float, float]:
    """(median, fastest) wall time of ``fn`` in ms after one warm-up, bounded in runs and seconds.

    On a shared machine the fastest run is the better estimate of the uncontended cost.
    """
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + max_s
    while len(times) < max(1, iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if time.perf_counter() > deadline:
            break
    return 1000 * statistics.median(times), 1000 * min(times)


def bench_family(family: str, batches: list[int], iters: int, max_s: float) -> dict[str, Any]:
    from streamd.bench.checkpoints import make_checkpoint, original_pipeline, parameters
    from streamd.export import family_module
    from streamd.export.export import export_plan
    from streamd.model.session import Detector

    with tempfile.TemporaryDirectory(prefix=f"bench-{family}-") as tmp:
        source, options = make_checkpoint(family, Path(tmp) / "ckpt")
        row: dict[str, Any] = {"family": family}
        detectors = {}
        plan = None
        for precision in ("fp32", "int8"):
            t0 = time.perf_counter()
            plan = family_module(family).load_plan(source, **options)
            res = export_plan(
                plan, Path(tmp) / "models", precision, int8=precision == "int8", say=lambda s: None
            )
            row[f"export_s_{precision}"] = time.perf_counter() - t0
            row[f"onnx_mb_{precision}"] = res.size_bytes / 1e6
            row[f"max_logit_diff_{precision}"] = res.variant_diffs.get(precision, res.max_diff)
            detectors[precision] = Detector.load(res.manifest_path, ["cpu"])
        assert plan is not None
        row["params_m"] = parameters(plan) / 1e6
        reference = original_pipeline(plan)
        rng = np.random.default_rng(0)
        windows = [
            detectors["fp32"].prepare(
                (0.1 * rng.standard_normal(int(WINDOW_S * 16000))).astype(np.float32)
            )
            for _ in range(max(batches))
        ]
        row["model_window_s"] = len(windows[0]) / 16000
        for b in batches:
            batch = np.stack(windows[:b])
            runs = {
                "torch": partial(reference, batch),
                **{f"onnx_{p}": partial(d.infer, batch) for p, d in detectors.items()},
            }
            for key, fn in runs.items():
                median, fastest = time_ms(fn, iters, max_s)
                row[f"{key}_ms_b{b}"], row[f"{key}_min_ms_b{b}"] = median / b, fastest / b
    return row


def print_table(rows: list[dict[str, Any]], batches: list[int]) -> None:
    head = f"{'family':<19} {'params':>7} {'export s':>11} {'ONNX MB':>11} {'int8 diff':>9}"
    for b in batches:
        head += f" | b{b} ms/window median (min): {'torch':>11} {'fp32':>11} {'int8':>11}"
    print(head)
    for r in rows:
        line = (
            f"{r['family']:<19} {r['params_m']:6.1f}M "
            f"{r['export_s_fp32']:5.0f}/{r['export_s_int8']:<5.0f} "
            f"{r['onnx_mb_fp32']:5.0f}/{r['onnx_mb_int8']:<5.0f} {r['max_logit_diff_int8']:9.2g}"
        )
        for b in batches:
            cells = [
                f"{r[f'{k}_ms_b{b}']:5.0f} ({r[f'{k}_min_ms_b{b}']:.0f})"
                for k in ("torch", "onnx_fp32", "onnx_int8")
            ]
            line += f" | {'':27}" + " ".join(f"{c:>11}" for c in cells)
        print(line)


def run(args: argparse.Namespace) -> int:
    from streamd.bench.checkpoints import BENCH_FAMILIES, setup_torch
    from streamd.bench.scorer import machine
    from streamd.errors import UsageError

    families = [f.strip() for f in args.families.split(",")] if args.families else BENCH_FAMILIES
    unknown = [f for f in families if f not in BENCH_FAMILIES]
    if unknown:
        raise UsageError(f"--families: unknown {unknown}; known: {', '.join(BENCH_FAMILIES)}")
    batches = [int(b) for b in args.batches.split(",")]
    setup_torch()
    print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.1f}")
    print(
        f"{WINDOW_S} s windows cut to each family's window; "
        f"median of {args.iters} runs after a warm-up"
    )
    rows = []
    for family in families:
        print(f"# {family}: building, exporting (fp32, int8) and timing ...", flush=True)
        row = bench_family(family, batches, args.iters, args.max_seconds)
        rows.append(row)
        gc.collect()  # the previous family's models are garbage now: free them before the next
        if args.json:
            print(
                json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
                flush=True,
            )
    print_table(rows, batches)
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    return 0
