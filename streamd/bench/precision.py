"""``streamd bench precision``: fp16 / int8 variants of an installed model, and front-end reuse,
kept only where parity on labelled phone audio holds.

Each variant is made from the installed ONNX file (fp16: weights and activations in float16
with float32 input/output; int8: dynamic quantisation of MatMul/Gemm, as ``models export
--int8``). One window per labelled clip from ../shared (wideband sources, through 8 kHz G.711
mu-law) is scored by the fp32 model and by the variant, on the same provider. Parity holds when
no decision flips at the model's threshold, the AUC moves by at most ``--max-auc-drop`` and no
p_fake moves by more than ``--max-dp``. ``--install`` writes a variant that passes next to the
original as ``NAME-fp16`` / ``NAME-int8`` (the GPU capacity script uses that).

``reuse`` compares ``model.reuse_front_end`` with whole-window runs on the windows a live stream
cuts (1 s hop over each clip), scored in stream order, so the cached frames are really reused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml


def register(sub: Any) -> None:
    p = sub.add_parser(
        "precision",
        help="fp16/int8 variants of a model: parity on labelled phone audio, and speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="installed model name (default: the only one installed)")
    p.add_argument("--models-dir", default="models")
    p.add_argument(
        "--to", default="fp16,int8,reuse", help="variants: fp16, int8, reuse (default all)"
    )
    p.add_argument("--provider", choices=["cpu", "cuda", "tensorrt"], default="cpu")
    p.add_argument("--shared", help="the shared data folder (default: ../shared when present)")
    p.add_argument("--clips", type=int, default=16, help="clips per label (default 16)")
    p.add_argument("--max-dp", type=float, default=0.02, help="largest p_fake change allowed")
    p.add_argument("--max-auc-drop", type=float, default=0.005)
    p.add_argument("--install", action="store_true", help="install variants that pass")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def make_variant(manifest_path: Path, kind: str, out_dir: Path) -> Path:
    """Write ``NAME-kind.onnx`` and its manifest into ``out_dir``; return the manifest path."""
    from streamd.export.export import _quantize_int8, _to_fp16
    from streamd.model.manifest import load_manifest, sha256_file

    m = load_manifest(manifest_path)
    src = (manifest_path.parent / m.onnx).resolve()
    name = f"{m.name}-{kind}"
    dst = out_dir / f"{name}.onnx"
    (_to_fp16 if kind == "fp16" else _quantize_int8)(src, dst)
    data = yaml.safe_load(manifest_path.read_text(encoding="utf-8"))
    data |= {"name": name, "onnx": dst.name, "sha256": sha256_file(dst), "precision": kind}
    out = out_dir / f"{name}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def labelled_windows(shared: Path, per_label: int, seconds: float) -> tuple[list[Any], np.ndarray]:
    """One window per clip (its first ``seconds``), through G.711; clips shorter than 2.5 s
    are skipped. Sources are taken in turn so no one source fills the set."""
    from streamd.bench.speech import shared_clips
    from streamd.offline.channel import g711_roundtrip
    from streamd.pipeline.audio import load_audio

    windows, labels = [], []
    for label in ("real", "fake"):
        sources = list(shared_clips(shared, label, per_source=per_label).values())
        taken, depth = 0, 0
        while taken < per_label and any(depth < len(s) for s in sources):
            for files in sources:
                if taken >= per_label or depth >= len(files):
                    continue
                x = load_audio(files[depth])[: int(seconds * 16000)]
                if len(x) >= 40000:
                    windows.append(g711_roundtrip(x))
                    labels.append(int(label == "fake"))
                    taken += 1
            depth += 1
    return windows, np.asarray(labels)


def labelled_streams(
    shared: Path, per_label: int, window: int, hop: int = 16000
) -> tuple[list[np.ndarray], list[tuple[str, int]], np.ndarray]:
    """Windows a live stream would cut from each clip (G.711, 1 s hop), with their places."""
    from streamd.bench.speech import shared_clips
    from streamd.offline.channel import g711_roundtrip
    from streamd.pipeline.audio import load_audio

    windows, places, labels = [], [], []
    for label in ("real", "fake"):
        taken = 0
        for source, files in shared_clips(shared, label, per_source=2).items():
            for f in files:
                x = g711_roundtrip(load_audio(f))
                if taken >= per_label or len(x) < window + hop:
                    continue
                for end in range(window, len(x) + 1, hop):
                    windows.append(x[end - window : end])
                    places.append((f"{source}/{f.name}", end))
                    labels.append(int(label == "fake"))
                taken += 1
    return windows, places, np.asarray(labels)


def compare(
    base: Any,
    variant: Any,
    windows: list[Any],
    labels: np.ndarray,
    places: list[tuple[str, int]] | None = None,
) -> dict[str, Any]:
    from streamd.offline.metrics import roc_auc

    def timed(det: Any, at: list[tuple[str, int]] | None) -> tuple[np.ndarray, float]:
        det.score_windows(windows[:1])  # warm-up (no place: the stream caches stay empty)
        t = time.perf_counter()
        runs = [
            det.score_windows(windows[i : i + 4], at[i : i + 4] if at else None)[0]
            for i in range(0, len(windows), 4)
        ]
        return np.concatenate(runs), (time.perf_counter() - t) / len(windows)

    p0, t0 = timed(base, None)
    p1, t1 = timed(variant, places)
    thr = base.manifest.threshold
    both = len(set(labels.tolist())) == 2
    return {
        "windows": len(windows),
        "max_dp": float(np.abs(p1 - p0).max()),
        "mean_dp": float(np.abs(p1 - p0).mean()),
        "flips": int(((p0 >= thr) != (p1 >= thr)).sum()),
        "auc_fp32": roc_auc(p0, labels) if both else None,
        "auc_variant": roc_auc(p1, labels) if both else None,
        "ms_per_window_fp32": 1000 * t0,
        "ms_per_window_variant": 1000 * t1,
    }


def run(args: argparse.Namespace) -> int:
    from streamd.bench.speech import find_shared
    from streamd.errors import UsageError
    from streamd.model.manifest import resolve_manifest
    from streamd.model.session import Detector, RuntimeOptions

    kinds = [k.strip() for k in args.to.split(",") if k.strip()]
    if not kinds or any(k not in ("fp16", "int8", "reuse") for k in kinds):
        raise UsageError("--to takes fp16, int8 and/or reuse")
    shared = find_shared(args.shared)
    if shared is None:
        print("../shared/data is absent: no labelled audio to check parity on; skipped")
        return 0
    providers = {"cpu": ["cpu"], "cuda": ["cuda", "cpu"], "tensorrt": ["tensorrt", "cuda", "cpu"]}
    manifest = Path(resolve_manifest(args.models_dir, args.model))
    base = Detector.load(manifest, providers[args.provider])
    windows, labels = labelled_windows(shared, args.clips, base.manifest.window.max_s)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            if kind == "reuse":
                variant = Detector.load(
                    manifest,
                    providers[args.provider],
                    runtime=RuntimeOptions(reuse_front_end=True),
                )
                if variant.reuse is None:
                    print(f"reuse: {base.name} has no front end to reuse; skipped")
                    continue
                sw, sp, sl = labelled_streams(
                    shared, max(2, args.clips // 4), base.manifest.max_samples
                )
                r = compare(base, variant, sw, sl, sp)
                r["reused"] = variant.reuse.reused / max(
                    1, variant.reuse.reused + variant.reuse.full
                )
                results[kind] = r | {"parity": _parity(r, args)}
                continue
            vpath = make_variant(manifest, kind, Path(tmp))
            variant = Detector.load(vpath, providers[args.provider])
            r = compare(base, variant, windows, labels)
            r["parity"] = _parity(r, args)
            if args.install and r["parity"]:
                for f in (vpath, vpath.with_suffix(".onnx")):
                    shutil.copy2(f, manifest.parent / f.name)
                r["installed"] = vpath.stem
            results[kind] = r
    if args.json:
        print(json.dumps({"model": base.name, "provider": base.provider, "variants": results}))
        return 0
    print(
        f"# {base.name} on {base.provider}: {len(windows)} windows ({int(labels.sum())} fake) "
        f"through G.711; parity = no flip at {base.manifest.threshold}, |dp| <= {args.max_dp}, "
        f"AUC drop <= {args.max_auc_drop}"
    )
    for kind, r in results.items():
        auc = (
            f"AUC {r['auc_fp32']:.4f} -> {r['auc_variant']:.4f}"
            if r["auc_fp32"] is not None
            else "AUC n/a"
        )
        print(
            f"{kind}: max |dp| {r['max_dp']:.4f}, mean {r['mean_dp']:.5f}, {r['flips']} "
            f"flips, {auc}, {r['ms_per_window_fp32']:.0f} -> {r['ms_per_window_variant']:.0f} "
            f"ms/window: {'parity holds' if r['parity'] else 'PARITY FAILS'}"
            + (f", installed as {r['installed']}" if r.get("installed") else "")
            + (f", {r['reused']:.0%} of windows from cached frames" if "reused" in r else "")
        )
    return 0


def _parity(r: dict[str, Any], args: argparse.Namespace) -> bool:
    auc_drop = (r["auc_fp32"] or 0) - (r["auc_variant"] or 0)
    return bool(r["flips"] == 0 and r["max_dp"] <= args.max_dp and auc_drop <= args.max_auc_drop)
