"""Leave-one-generator-out: for every fake ``system``, train without it and test on it.

A detector adapted on a set of generators looks good on held-out clips of those same generators;
what an operator needs is how it does on the next one. Each fold retrains the head from the base
weights with the same options on the training groups minus one system (early stopping on the
validation groups minus that system), then scores every clip of the left-out system, from any
group, since none was trained on, against the real clips of the validation groups. The threshold
is the one the fold's own recipe would ship: at the target false-alarm rate on those reals,
chosen without the left-out system, and the detection rate of the unseen system is read there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamd.offline.datasets import LabeledClip
from streamd.offline.metrics import equal_error_rate, roc_auc
from streamd.training.data import EVAL_CONDITIONS, Split
from streamd.training.features import FamilyAdapter, FeatureTable, state_of
from streamd.training.trainer import TrainOptions, clip_scores, pick_threshold, predict, train


def _rows_of(table: FeatureTable, clip_ids: set[int]) -> np.ndarray:
    return np.flatnonzero(np.isin(table.clip, sorted(clip_ids)))


def _condition_figures(fake: np.ndarray, real: np.ndarray, threshold: float) -> dict[str, Any]:
    s = np.r_[fake, real]
    y = np.r_[np.ones(len(fake), int), np.zeros(len(real), int)]
    if not len(fake) or not len(real):
        return {"n_fake": len(fake), "n_real": len(real)}
    return {
        "n_fake": len(fake),
        "n_real": len(real),
        "eer": round(equal_error_rate(s, y).eer, 4),
        "auc": round(roc_auc(s, y), 4),
        "threshold": round(threshold, 6),
        "detection_at_threshold": round(float((fake >= threshold).mean()), 4),
        "false_alarm_at_threshold": round(float((real >= threshold).mean()), 4),
    }


def _fold_figures(
    adapter: FamilyAdapter,
    table: FeatureTable,
    held: set[int],
    val_rows: np.ndarray,
    fold_val: np.ndarray,
    far: float,
) -> dict[str, Any]:
    """Score with the head as it is now: threshold from the fold's validation rows, then test."""
    threshold = pick_threshold(table, fold_val, predict(adapter, table, fold_val), far)
    real_rows = val_rows[table.label[val_rows] == 0]
    test_rows = _rows_of(table, held)
    rows = np.r_[test_rows, real_rows]
    p = predict(adapter, table, rows)
    out: dict[str, Any] = {}
    for cond in EVAL_CONDITIONS:
        _, s, y = clip_scores(table, rows, p, cond)
        out[cond] = _condition_figures(s[y == 1], s[y == 0], threshold)
    return out


def leave_one_generator_out(
    adapter: FamilyAdapter,
    table: FeatureTable,
    clips: list[LabeledClip],
    split: Split,
    opts: TrainOptions,
    show_progress: bool = True,
    say: Any = print,
) -> dict[str, Any]:
    """Run every fold; returns the ``metrics.logo`` record (per system, base and adapted)."""
    trained_state = state_of(adapter.head)
    train_set, val_set = set(split.train), set(split.val)
    systems = sorted({c.system or "(no system)" for c in clips if c.label == "fake"})
    per_system: dict[str, Any] = {}
    seconds = 0.0
    try:
        for i, system in enumerate(systems, 1):
            held = {
                j
                for j, c in enumerate(clips)
                if c.label == "fake" and (c.system or "(no system)") == system
            }
            fold_train = _rows_of(table, train_set - held)
            fold_val = _rows_of(table, val_set - held)
            val_rows = _rows_of(table, val_set)
            adapter.head.load_state_dict(adapter.base_state)
            entry: dict[str, Any] = {
                "n_fake_clips": len(held),
                "base": _fold_figures(adapter, table, held, val_rows, fold_val, opts.far),
            }
            per_system[system] = entry
            if not table.label[fold_train].any():
                entry["skipped"] = "no other fake system in the training groups"
                say(f"  LOGO {i}/{len(systems)} {system[:50]:50} skipped: {entry['skipped']}")
                continue
            # early stopping needs both classes; without them the fold stops on training AUC
            can_validate = len(set(table.label[fold_val].tolist())) == 2
            res = train(
                adapter,
                table,
                fold_train,
                fold_val if can_validate else fold_train,
                opts,
                show_progress=show_progress,
                title=f"LOGO {i}/{len(systems)}",
            )
            seconds += res.seconds
            after = _fold_figures(adapter, table, held, val_rows, fold_val, opts.far)
            entry.update(
                epochs=res.epochs_run,
                best_epoch=res.best_epoch,
                adapted=after,
                early_stopping="validation groups" if can_validate else "training clips",
            )
            a = after[EVAL_CONDITIONS[0]]
            say(
                f"  LOGO {i}/{len(systems)} {system[:50]:50} EER "
                f"{100 * a.get('eer', float('nan')):5.1f}%  detection "
                f"{100 * a.get('detection_at_threshold', float('nan')):5.1f}%  "
                f"({res.seconds:.0f} s)"
            )
    finally:
        adapter.head.load_state_dict(trained_state)
    return {
        "by": "system",
        "systems": per_system,
        "summary": summarize(per_system),
        "held_out_real": (
            f"real clips of the validation groups ({split.by}: {', '.join(split.val_groups)})"
        ),
        "train": opts.setting,
        "far": opts.far,
        "seconds": round(seconds, 1),
    }


def summarize(per_system: dict[str, Any]) -> dict[str, Any]:
    """Mean and worst EER, and mean detection at the fold thresholds, per condition and model."""
    out: dict[str, Any] = {}
    for model in ("base", "adapted"):
        for cond in EVAL_CONDITIONS:
            done = [
                v[model][cond]
                for v in per_system.values()
                if "adapted" in v and "eer" in v[model].get(cond, {})
            ]
            eers = [d["eer"] for d in done]
            dets = [d["detection_at_threshold"] for d in done]
            if eers:
                out[f"{model}_{cond}"] = {
                    "mean_eer": round(float(np.mean(eers)), 4),
                    "worst_eer": round(float(np.max(eers)), 4),
                    "mean_detection_at_threshold": round(float(np.mean(dets)), 4),
                    "systems": len(eers),
                }
    return out
