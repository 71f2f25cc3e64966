"""``streamd train``: adapt a detector to labelled audio and install it under the model contract."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from streamd.app.logs import setup_logging
from streamd.cli.common import add_config_args, config_from_args

DESCRIPTION = """\
Fine-tune a detector on your own labelled clips and install the result as NAME.onnx + NAME.yaml.

Training sees what the daemon will see: every clip is converted to 16 kHz mono, gated by the VAD
and cut by the windower (vad.*, windows.* of the config), under three conditions: clean, an 8 kHz
G.711 mu-law round trip, and a random call-channel draw (level, background noise at a random SNR,
300-3400 Hz band-limiting, G.711 mu/A-law, bursty packet loss) applied with the same probabilities
to real and fake clips, so that format cannot be the cue. Validation holds out whole speakers or
sources (--val-by), never single clips; training stops early on validation ROC-AUC.

What --train trains (AASIST / AASIST-L):
  head   the output layer only (out_layer). The sinc front end, encoder, graph attention and HS-GAL
         layers are frozen; their readout is computed once per window and cached. Seconds per epoch.
  graph  graph attention (GAT_layer_S/T, pos_S), graph pooling, both HS-GAL branches with their
         stack nodes (master1/2), and out_layer. The sinc front end, first BN and the six residual
         encoder blocks are frozen; their spectral and temporal node inputs are cached, so epochs
         never run the encoder. The default: feasible on a 2-core CPU.
  all    every parameter from the waveform up (the sinc filterbank is fixed by design). Nothing is
         cached on disk; meant for --device cuda.
wav2vec2-seqcls bases (Hugging Face folder): head = projector + classifier, on the cached mean of
the last hidden state (exact: the model mean-pools and the projector is linear). Unfreezing top
transformer layers is not implemented yet; graph and all refuse with a message.

The manifest's threshold is chosen for --far false alarms on the held-out real clips (the strictest
of clean and G.711); metrics.train holds base-vs-adapted figures on the held-out groups, and
--logo adds leave-one-generator-out figures (metrics.logo; shown by `streamd eval --logo`).

--recipe YAML rebuilds a model from a committed recipe instead (the other options are not used):
  streamd train --recipe configs/recipes/phone-aasist5-lr.yaml    # the built-in default
A recipe names the data folder (manifest.csv in ../shared/data's format), the frozen encoder
checkpoint and its sha256 (a different file is refused), the windows per call, the head's C (a
list is chosen per held-out source), optional call-channel copies, the target share of real
calls alerting, and where to write (`out`: model.onnx + manifest.yaml) and cache. Relative paths
are taken from the working directory. Encoder readouts are cached per call under `cache`, so an
interrupted or repeated run resumes. The manifest is the model card: the recipe, every training
source with its license, leave-one-source-out and leave-one-generator-out figures per call.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="adapt a detector to your own labelled audio",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--recipe",
        metavar="YAML",
        help="rebuild a model from a committed recipe file (configs/recipes/phone-aasist5-lr.yaml "
        "makes the built-in default; described above); the options below are then not "
        "used",
    )
    p.add_argument(
        "--base",
        metavar="MODEL_OR_PTH",
        help=(
            "installed model name (its manifest's export_from names "
            "the checkpoint), or a .pth / Hugging Face folder"
        ),
    )
    p.add_argument(
        "--data",
        action="append",
        metavar="CSV",
        help=(
            "labelled clips: CSV with path,label (optional "
            "system, speaker/group, source); repeatable"
        ),
    )
    p.add_argument(
        "--out",
        metavar="NAME",
        help="name of the new model (writes NAME.onnx + NAME.yaml)",
    )
    p.add_argument(
        "--train",
        dest="setting",
        choices=["head", "graph", "all"],
        default="graph",
        help="which layers to train (see above; default graph)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=15,
        help="most epochs (default 15; early stopping may end sooner)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=4,
        help="epochs without a better validation AUC before stopping (default 4)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--lr",
        type=float,
        help="peak learning rate of AdamW (default: head 1e-3, graph 3e-4, all 3e-5)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the split, augmentation, batch order and dropout (default 0)",
    )
    p.add_argument(
        "--far",
        type=float,
        default=0.01,
        help="target false-alarm rate for the threshold (default 0.01)",
    )
    p.add_argument(
        "--val-by",
        choices=["speaker", "source"],
        default="speaker",
        help="what validation holds out whole (default speaker)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.25,
        help="share of each class to hold out (default 0.25)",
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=(
            "add a random call-channel draw per clip (default on; clean and G.711 are always used)"
        ),
    )
    p.add_argument(
        "--draws",
        type=int,
        default=1,
        help="random augmentation draws per clip, each cached (default 1)",
    )
    p.add_argument(
        "--max-windows",
        type=int,
        default=3,
        help="windows per clip and condition, evenly spread (default 3)",
    )
    p.add_argument(
        "--short-clips",
        choices=["tile", "drop"],
        default="tile",
        help=(
            "clips with less speech than windows.min_s: use whole, "
            "tiled by the model's pad rule (default), or drop"
        ),
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint of an interrupted run with the same options",
    )
    p.add_argument(
        "--logo",
        action="store_true",
        help="also run leave-one-generator-out (one retraining per fake system)",
    )
    p.add_argument(
        "--logo-epochs", type=int, help="most epochs per leave-one-out fold (default: --epochs)"
    )
    p.add_argument(
        "--logo-train",
        choices=["head", "graph", "all"],
        help=(
            "layers the leave-one-out folds train (default: "
            "as --train; head is far cheaper on a CPU)"
        ),
    )
    p.add_argument(
        "--limit", type=int, help="use at most N clips per class (evenly spread), for quick runs"
    )
    p.add_argument(
        "--device", choices=["cpu", "cuda"], help="where to train (default: cuda when available)"
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument(
        "--work-dir",
        metavar="DIR",
        help="checkpoint, trained .pth and split CSVs (default: MODELS_DIR/.train/NAME)",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="frozen-feature cache (default: $XDG_CACHE_HOME/streamd/features)",
    )
    p.add_argument(
        "--models-dir",
        metavar="DIR",
        help="where the base is looked up and the new model written (default: model.dir)",
    )
    add_config_args(p, model=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamd.cli.eval import _spread
    from streamd.errors import UsageError
    from streamd.offline.datasets import load_labeled

    cfg = config_from_args(args)
    setup_logging(args.log_level or "warning", cfg.logging.format)
    if args.recipe:
        try:
            from streamd.training.recipe import run_recipe
        except ImportError as exc:
            raise UsageError(f"training needs {exc.name}: pip install 'streamd[export]'") from None
        run_recipe(Path(args.recipe))
        return 0
    missing = [f"--{k}" for k in ("base", "data", "out") if not getattr(args, k)]
    if missing:
        raise UsageError(f"streamd train needs {', '.join(missing)} (or --recipe)")
    for key in ("epochs", "batch_size", "max_windows", "threads"):
        if getattr(args, key) < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be at least 1")
    if not 0.0 <= args.far < 1.0:
        raise UsageError("--far must be in [0, 1)")
    try:
        import torch

        from streamd.export.catalog import cache_dir
        from streamd.training.data import WindowRules
        from streamd.training.job import JobOptions, run_job
        from streamd.training.trainer import TrainOptions
    except ImportError as exc:
        raise UsageError(f"training needs {exc.name}: pip install 'streamd[export]'") from None
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: this torch sees no CUDA device")
    clips = _spread(load_labeled(args.data), args.limit)
    models_dir = cfg.model.dir
    opts = JobOptions(
        base=args.base,
        data=args.data,
        out=args.out,
        models_dir=models_dir,
        work_dir=Path(args.work_dir) if args.work_dir else Path(models_dir) / ".train" / args.out,
        cache_dir=Path(args.cache_dir) if args.cache_dir else cache_dir() / "features",
        train=TrainOptions(
            setting=args.setting,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            patience=args.patience,
            seed=args.seed,
            far=args.far,
            device=device,
        ),
        rules=WindowRules.from_config(cfg),
        val_by=args.val_by,
        val_fraction=args.val_fraction,
        augmented_draws=args.draws if args.augment else 0,
        max_windows=args.max_windows,
        short_clips=args.short_clips,
        logo=args.logo,
        logo_epochs=args.logo_epochs,
        logo_train=args.logo_train,
        threads=args.threads or os.cpu_count() or 1,
        resume=args.resume,
        show_progress=sys.stderr.isatty(),
    )
    run_job(clips, opts)
    return 0
