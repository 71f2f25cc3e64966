"""``streamd models``: list, export, verify and pull detectors under the model contract."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streamd.errors import ModelError, UsageError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "models",
        help="list, export, verify and pull models",
        description=(
            "Manage models: each is NAME.onnx + NAME.yaml (the manifest) in the models dir."
        ),
    )
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", title="actions")

    lp = msub.add_parser(
        "list",
        help="show installed models",
        description="Installed models with family, provider fit, window range, labels and sha256.",
    )
    lp.add_argument("--models-dir", default="models", metavar="DIR")
    lp.set_defaults(func=cmd_list)

    sp = msub.add_parser(
        "show",
        help="print a model's manifest (model card) with its ONNX path",
        description=(
            "Print a model's manifest with the absolute path of its ONNX file. Without "
            "NAME: the model the daemon would use (model.dir, else the built-in default)."
        ),
    )
    sp.add_argument(
        "name", nargs="?", help="installed or built-in model (default: what the daemon would use)"
    )
    sp.add_argument("--models-dir", default="models", metavar="DIR")
    sp.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    sp.set_defaults(func=cmd_show)

    ep = msub.add_parser(
        "export",
        help="turn a checkpoint into NAME.onnx + NAME.yaml",
        description=(
            "Export a checkpoint to the model contract (raw 16 kHz float32 [batch, samples] in, "
            "logits out), verify the ONNX graph against PyTorch on noise and speech-like audio at "
            "several lengths and batch sizes, print the max difference, and refuse to write a "
            "model that does not match. Needs the export extra: pip install 'streamd[export]'."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ep.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="PATH",
        help=(
            "checkpoint: a Hugging Face folder, a .pth/.pt state dict (aasist, rawgat-st, "
            "wav2vec2-meanpool), or for w2v2-embed-logreg a folder with the wav2vec2 "
            "backbone (itself or backbone/) and classifier.pkl [+ scaler.pkl]"
        ),
    )
    ep.add_argument(
        "--name", required=True, help="model name: writes DIR/NAME.onnx and DIR/NAME.yaml"
    )
    ep.add_argument(
        "--family",
        help=(
            "model family: wav2vec2-seqcls, wav2vec2-meanpool, ast, convnext-mel, "
            "w2v2-embed-logreg, aasist, rawgat-st (default: guessed from the checkpoint)"
        ),
    )
    ep.add_argument(
        "--config",
        dest="family_config",
        metavar="PATH",
        help=(
            "family config file: AASIST .conf; RawGAT-ST model_config .yaml; "
            "wav2vec2-meanpool: the backbone's transformers config.json; convnext-mel: JSON of "
            "mel-picture recipe overrides"
        ),
    )
    ep.add_argument(
        "--fake-index",
        type=int,
        action="append",
        metavar="N",
        help="output index that means fake (repeat for several)",
    )
    ep.add_argument(
        "--fake-classes", metavar="A,B", help="w2v2-embed-logreg: classifier classes that mean fake"
    )
    ep.add_argument(
        "--labels", metavar="A,B", help="label names per output index, when the checkpoint has none"
    )
    ep.add_argument(
        "--trust-pickle",
        action="store_true",
        help=(
            "w2v2-embed-logreg: allow unpickling classifier.pkl/scaler.pkl. Unpickling runs "
            "code from the file, so a malicious pickle can do anything your user account "
            "can: pass this only for files you trust. Without it nothing is unpickled"
        ),
    )
    ep.add_argument(
        "--window-min", type=float, metavar="S", help="shortest window the model accepts (s)"
    )
    ep.add_argument(
        "--window-max", type=float, metavar="S", help="longest window the model sees (s)"
    )
    ep.add_argument(
        "--threshold",
        type=float,
        help="alert threshold on p_fake written to the manifest (default 0.5)",
    )
    q = ep.add_mutually_exclusive_group()
    q.add_argument(
        "--int8", action="store_true", help="dynamic int8 quantization of MatMul/Gemm only"
    )
    q.add_argument(
        "--fp16", action="store_true", help="convert weights to float16 (input/output stay float32)"
    )
    ep.add_argument("--models-dir", default="models", metavar="DIR")
    ep.add_argument("--source-url", help="where the weights came from (written to the manifest)")
    ep.add_argument("--license", help="license of the weights (written to the manifest)")
    ep.set_defaults(func=cmd_export)

    vp = msub.add_parser(
        "verify",
        help="re-check an installed model against its source checkpoint",
        description=(
            "Re-export the source checkpoint in memory and compare the "
            "installed ONNX graph with PyTorch; prints the max difference."
        ),
    )
    vp.add_argument("name")
    vp.add_argument("--models-dir", default="models", metavar="DIR")
    vp.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="checkpoint to compare with (default: the one recorded at export)",
    )
    vp.set_defaults(func=cmd_verify)

    pp = msub.add_parser(
        "pull",
        help="download a known model, verify its sha256 and export it",
        description=(
            "Download a known published checkpoint into the cache, check its "
            "sha256, and export it. Offline, says how to install from a local file."
        ),
    )
    pp.add_argument("name", help="known model: aasist, aasist-l, aasist-asvspoof5, rawgat-st")
    pp.add_argument("--models-dir", default="models", metavar="DIR")
    pp.add_argument(
        "--cache-dir", metavar="DIR", help="download cache (default: $XDG_CACHE_HOME/streamd)"
    )
    pp.set_defaults(func=cmd_pull)

    tp = msub.add_parser(
        "export-triton",
        help="write a Triton model repository (ONNX + config.pbtxt) for GPU inference nodes",
        description=(
            "Write DIR/NAME/1/model.onnx and DIR/NAME/config.pbtxt for Triton's onnxruntime "
            "backend, with dynamic batching and a GPU instance_group. Start Triton with "
            "--model-repository DIR and point model.triton.servers at it (docs/scale-out.md)."
        ),
    )
    tp.add_argument("name", help="installed model name")
    tp.add_argument("dir", help="the model repository folder (created if missing)")
    tp.add_argument("--models-dir", default="models", metavar="DIR")
    tp.add_argument("--triton-name", help="name on Triton (default: the model's name)")
    tp.add_argument("--max-batch", type=int, default=64, help="max_batch_size (default 64)")
    tp.add_argument(
        "--queue-delay-us", type=int, default=2000, help="dynamic batching delay (default 2000)"
    )
    tp.add_argument("--kind", choices=["gpu", "cpu"], default="gpu", help="instance kind")
    tp.add_argument("--instances", type=int, default=1, help="instances per device (default 1)")
    tp.set_defaults(func=cmd_export_triton)

    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def cmd_list(args: argparse.Namespace) -> int:
    from streamd.model.manifest import installed_manifests, load_manifest
    from streamd.model.shipped import DEFAULT_BUILTIN, builtin_manifests

    found = installed_manifests(args.models_dir)
    shipped = builtin_manifests()
    if not found and not shipped:
        print(f"no models in {args.models_dir}/ (see models/README.md to get one)")
        return 0
    try:
        import onnxruntime as ort

        gpu = "CUDAExecutionProvider" in ort.get_available_providers()
    except ImportError:
        gpu = False
    tags = {p: "" for p in found}
    for name, p in shipped.items():
        tags[p] = " [built-in, default]" if name == DEFAULT_BUILTIN and not found else " [built-in]"
    for path, tag in tags.items():
        try:
            m = load_manifest(path)
        except ModelError as exc:
            print(f"{path.stem}: BROKEN: {exc}")
            continue
        fake = ",".join(m.labels[i] for i in m.fake_indices)
        fit = "cuda,cpu" if gpu else "cpu (no CUDA provider in this onnxruntime)"
        prec = getattr(m, "precision", "fp32")
        print(
            f"{m.name}{tag}: family={m.family} precision={prec} "
            f"window={m.window.min_s}-{m.window.max_s}s pad={m.window.pad} labels={m.labels} "
            f"fake={fake} threshold={m.threshold} providers={fit} sha256={(m.sha256 or '')[:16]}…"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import json

    import yaml

    from streamd.model.manifest import resolve_manifest

    path = resolve_manifest(args.models_dir, args.name)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["onnx_path"] = str((path.parent / data["onnx"]).resolve())
    data["manifest_path"] = str(path.resolve())
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
    return 0


def _split(v: str | None) -> list[str] | None:
    return [x.strip() for x in v.split(",") if x.strip()] if v else None


def plan_from_args(args: argparse.Namespace, source: Path, family: str) -> Any:
    from streamd.export import family_module

    if not source.exists():
        raise UsageError(f"--from {source}: no such file or folder")
    fake: int | list[int] | None = None
    if args.fake_index:
        fake = args.fake_index[0] if len(args.fake_index) == 1 else list(args.fake_index)
    options: dict[str, Any] = {
        "fake_index": fake,
        "config_path": Path(args.family_config) if getattr(args, "family_config", None) else None,
        "fake_classes": _split(getattr(args, "fake_classes", None)),
        "labels": _split(getattr(args, "labels", None)),
        "trust_pickle": getattr(args, "trust_pickle", False),
        "source_url": getattr(args, "source_url", None),
        "license": getattr(args, "license", None),
    }
    if getattr(args, "expected_pickle_sha256", None):
        options["expected_pickle_sha256"] = args.expected_pickle_sha256
    if getattr(args, "window_min", None):
        options["window_min_s"] = args.window_min
    if getattr(args, "window_max", None):
        options["window_max_s"] = args.window_max
    plan = family_module(family).load_plan(source, **options)
    if getattr(args, "threshold", None) is not None:
        plan.threshold = args.threshold
    plan.extra.setdefault("export_from", str(source.resolve()))
    plan.extra.setdefault(
        "export_options",
        {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in options.items()
            if v not in (None, False)
        },
    )
    return plan


def cmd_export(args: argparse.Namespace) -> int:
    from streamd.export import guess_family
    from streamd.export.export import export_plan

    source = Path(args.source)
    if not source.exists():
        raise UsageError(f"--from {source}: no such file or folder")
    family = args.family or guess_family(source)
    print(f"family {family}: loading {source}")
    plan = plan_from_args(args, source, family)
    res = export_plan(plan, args.models_dir, args.name, int8=args.int8, fp16=args.fp16)
    print(f"installed model {args.name!r}: max logit difference ONNX vs PyTorch {res.max_diff:.3g}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from streamd.export.export import compare, verify_lengths
    from streamd.export.probe_audio import probe_batch
    from streamd.model.manifest import load_manifest, resolve_manifest

    mpath = resolve_manifest(args.models_dir, args.name)
    m = load_manifest(mpath)
    src = args.source or getattr(m, "export_from", None)
    if not src:
        raise UsageError(f"{mpath}: no export_from recorded; pass --from CHECKPOINT")
    opts = dict(getattr(m, "export_options", {}) or {})
    ns = argparse.Namespace(
        fake_index=[opts["fake_index"]]
        if isinstance(opts.get("fake_index"), int)
        else opts.get("fake_index"),
        family_config=opts.get("config_path"),
        fake_classes=",".join(opts.get("fake_classes") or []) or None,
        labels=",".join(opts.get("labels") or []) or None,
        trust_pickle=opts.get("trust_pickle", False),
        source_url=None,
        license=None,
        window_min=opts.get("window_min_s"),
        window_max=opts.get("window_max_s"),
        threshold=None,
    )
    ns.expected_pickle_sha256 = getattr(m, "pickle_sha256", None)  # never unpickle a changed file
    plan = plan_from_args(ns, Path(src), m.family)
    batches = probe_batch(verify_lengths(m.window), seed=123)
    from streamd.export.export import _torch_reference

    diff, _ = compare(mpath.parent / m.onnx, _torch_reference(plan), batches)
    prec = getattr(m, "precision", "fp32")
    tol = 1e-3 if prec == "fp32" else 0.5
    ok = diff <= tol
    print(
        f"{m.name}: max logit difference ONNX ({prec}) vs "
        f"PyTorch {diff:.3g} -> {'OK' if ok else 'MISMATCH'}"
    )
    return 0 if ok else 1


def cmd_pull(args: argparse.Namespace) -> int:
    try:
        from streamd.export.catalog import pull
    except ImportError:
        print("streamd models pull: not available in this build", file=sys.stderr)
        return 1
    pull(args.name, Path(args.models_dir), Path(args.cache_dir) if args.cache_dir else None)
    return 0


def cmd_export_triton(args: argparse.Namespace) -> int:
    from streamd.model.manifest import resolve_manifest
    from streamd.model.triton_repo import write_triton_repo

    if args.max_batch < 1 or args.instances < 1 or args.queue_delay_us < 0:
        raise UsageError("--max-batch and --instances must be >= 1, --queue-delay-us >= 0")
    folder = write_triton_repo(
        resolve_manifest(args.models_dir, args.name),
        Path(args.dir),
        args.triton_name,
        args.max_batch,
        args.queue_delay_us,
        "KIND_GPU" if args.kind == "gpu" else "KIND_CPU",
        args.instances,
    )
    print(f"wrote {folder}/config.pbtxt and {folder}/1/model.onnx")
    return 0
