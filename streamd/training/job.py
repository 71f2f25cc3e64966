"""One ``streamd train`` run end to end: base, data, split, cached features, training, export,
LOGO."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamd.errors import UsageError
from streamd.export import guess_family
from streamd.export.export import export_plan
from streamd.model.manifest import load_manifest, resolve_manifest, sha256_file, write_manifest
from streamd.offline.datasets import LabeledClip
from streamd.training.data import Split, WindowRules, conditions, split_by_group
from streamd.training.features import FeatureRecipe, build_table, make_adapter
from streamd.training.report import format_logo, format_validation
from streamd.training.trainer import TrainOptions, figures, pick_threshold, predict, train


@dataclass(frozen=True)
class Base:
    """The model training starts from: an installed model (via ``export_from``) or a checkpoint."""

    family: str
    checkpoint: Path
    config_path: Path | None
    name: str
    source: str
    license: str
    reported: Any = None


def resolve_base(spec: str, models_dir: str) -> Base:
    path = Path(spec)
    if path.exists():
        from streamd.export.catalog import by_sha256

        known = by_sha256(sha256_file(path)) if path.is_file() else None
        return Base(
            guess_family(path),
            path,
            None,
            path.stem,
            known.url if known else str(path.resolve()),
            known.license if known else "see the checkpoint's source",
            known.reported if known else None,
        )
    manifest = load_manifest(resolve_manifest(models_dir, spec))
    origin = getattr(manifest, "export_from", None)
    if not origin or not Path(origin).exists():
        raise UsageError(
            f"--base {spec}: the installed model records no checkpoint that exists here "
            f"(export_from: {origin}); pass the .pth or Hugging Face folder it was exported from"
        )
    conf = (getattr(manifest, "export_options", None) or {}).get("config_path")
    return Base(
        manifest.family,
        Path(origin),
        Path(conf) if conf else None,
        manifest.name,
        manifest.source,
        manifest.license,
        manifest.metrics.get("reported"),
    )


@dataclass(frozen=True)
class JobOptions:
    base: str
    data: list[str]
    out: str
    models_dir: str
    work_dir: Path
    cache_dir: Path | None
    train: TrainOptions
    rules: WindowRules
    val_by: str = "speaker"
    val_fraction: float = 0.25
    augmented_draws: int = 1  # 0 = --no-augment: clean and telephone conditions only
    max_windows: int = 3
    short_clips: str = "tile"
    logo: bool = False
    logo_epochs: int | None = None
    logo_train: str | None = None  # None: the same setting as the model
    threads: int = 2
    resume: bool = False
    show_progress: bool = True


def write_split(clips: list[LabeledClip], split: Split, folder: Path) -> None:
    """train.csv / val.csv, so the held-out groups can be re-measured with ``streamd eval
    val.csv``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, idx in (("train", split.train), ("val", split.val)):
        with open(folder / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "system", "speaker", "source"])
            for i in idx:
                c = clips[i]
                w.writerow([str(c.path.resolve()), c.label, c.system, c.speaker, c.source])


def run_job(clips: list[LabeledClip], o: JobOptions, say: Any = print) -> dict[str, Any]:
    torch.set_num_threads(o.threads)
    base = resolve_base(o.base, o.models_dir)
    split = split_by_group(clips, o.val_by, o.val_fraction, o.train.seed)  # type: ignore[arg-type]
    write_split(clips, split, o.work_dir)
    say(
        f"base {base.name} ({base.family}, {base.checkpoint}); {len(clips)} "
        f"clips; validation by {o.val_by}: {len(split.val)} clips in "
        f"{len(split.val_groups)} groups, training {len(split.train)} clips"
    )
    adapter = make_adapter(
        base.family, base.checkpoint, o.train.setting, o.train.device, base.config_path
    )
    say(
        f"--train {o.train.setting}: trains "
        f"{adapter.trained_layers}; frozen: {adapter.frozen_layers or 'nothing'}"
    )
    rules = o.rules.fitted(adapter.window.min_s, adapter.window.max_s)
    recipe = FeatureRecipe(
        rules, tuple(conditions(o.augmented_draws)), o.max_windows, o.short_clips, o.train.seed
    )
    t0 = time.perf_counter()
    table = build_table(clips, adapter, recipe, o.cache_dir, o.show_progress)
    feat_s = time.perf_counter() - t0
    say(
        f"frozen features: {len(table)} windows x conditions "
        f"{', '.join(table.conditions)} in {feat_s:.0f} s"
        + (f"; {len(table.skipped)} clips skipped" if table.skipped else "")
    )
    train_rows = np.flatnonzero(np.isin(table.clip, split.train))
    val_rows = np.flatnonzero(np.isin(table.clip, split.val))
    base_fig = figures(table, val_rows, predict(adapter, table, val_rows), None, o.train.far)
    result = train(
        adapter,
        table,
        train_rows,
        val_rows,
        o.train,
        o.work_dir / "checkpoint.pt",
        resume=o.resume,
        show_progress=o.show_progress,
    )
    p = predict(adapter, table, val_rows)
    threshold = pick_threshold(table, val_rows, p, o.train.far)
    record = {
        "date": date.today().isoformat(),
        "base": {
            "name": base.name,
            "checkpoint_sha256": sha256_file(base.checkpoint),
            "source": base.source,
        },
        "data": [str(Path(d).resolve()) for d in o.data],
        "clips": len(clips),
        "train": o.train.setting,
        "trained_layers": adapter.trained_layers,
        "frozen_layers": adapter.frozen_layers,
        "options": {k: v for k, v in o.train.__dict__.items() if k != "device"}
        | {"lr": o.train.learning_rate},
        "conditions": table.conditions,
        "max_windows_per_clip": o.max_windows,
        "short_clips": o.short_clips,
        "split": {
            "by": split.by,
            "val_groups": split.val_groups,
            "train_clips": len(split.train),
            "val_clips": len(split.val),
            "train_windows": len(train_rows),
            "val_windows": len(val_rows),
        },
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "best_val_auc": round(result.best_auc, 4),
        "history": result.history,
        "far": o.train.far,
        "threshold": round(threshold, 6),
        "seconds": {"features": round(feat_s, 1), "training": round(result.seconds, 1)},
        "validation_base": base_fig,
        "validation_adapted": figures(table, val_rows, p, threshold, o.train.far),
    }
    say(format_validation(record))
    plan = adapter.export_plan(o.work_dir, o.out)
    plan.threshold = threshold
    plan.source = (
        f"streamd train: {base.name} ({base.source}) fine-tuned ({o.train.setting}) on "
        f"{', '.join(o.data)} ({len(clips)} clips)"
    )
    plan.license = f"{base.license} (base weights); fine-tuned on the data named in source"
    plan.metrics = (
        {"reported_by_base": base.reported, "train": record} if base.reported else {"train": record}
    )
    res = export_plan(plan, o.models_dir, o.out, say=say)
    if o.logo:
        from streamd.training.logo import leave_one_generator_out

        setting = o.logo_train or o.train.setting
        if setting != o.train.setting:  # a cheaper recipe for the folds; the record says which
            adapter = make_adapter(
                base.family, base.checkpoint, setting, o.train.device, base.config_path
            )
            table = build_table(clips, adapter, recipe, o.cache_dir, o.show_progress)
        say(f"leave-one-generator-out: one --train {setting} fold per fake system")
        fold_opts = replace(
            o.train,
            setting=setting,
            epochs=o.logo_epochs or o.train.epochs,
            lr=o.train.lr if setting == o.train.setting else None,
        )
        logo = leave_one_generator_out(
            adapter, table, clips, split, fold_opts, o.show_progress, say
        )
        plan.metrics["logo"] = {**logo, "model_train": o.train.setting}
        manifest = load_manifest(res.manifest_path)
        manifest.metrics = plan.metrics
        write_manifest(manifest, res.manifest_path)
        say(format_logo(plan.metrics))
    say(
        f"installed model {o.out!r} in {o.models_dir}/ (threshold "
        f"{threshold:.4f}); held-out groups listed in {o.work_dir / 'val.csv'}"
    )
    return plan.metrics
