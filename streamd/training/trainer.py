"""The training loop on cached features: AdamW, warmup, class weights, early stopping on ROC-AUC.

Determinism: the head's weights come from the checkpoint, batch order and the condition each clip
is heard under are drawn from ``numpy.random.default_rng([seed, epoch])``, and dropout from torch's
generator seeded once and saved in every checkpoint, so the same seed gives the same weights and
a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from streamd.errors import UsageError
from streamd.offline.metrics import equal_error_rate, roc_auc, threshold_at_false_alarm
from streamd.training.data import EVAL_CONDITIONS, class_weights
from streamd.training.features import FamilyAdapter, FeatureTable, state_of

DEFAULT_LR = {"head": 1e-3, "graph": 3e-4, "all": 3e-5}


@dataclass(frozen=True)
class TrainOptions:
    setting: str = "graph"
    epochs: int = 15
    batch_size: int = 32
    lr: float | None = None  # None: DEFAULT_LR[setting]
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of all steps spent ramping the learning rate up
    patience: int = 4  # epochs without a better validation AUC before stopping
    seed: int = 0
    far: float = 0.01
    device: str = "cpu"

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.setting]

    def resume_key(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed (the epoch budget may grow)."""
        d = dict(self.__dict__)
        d.pop("epochs")
        d.pop("device")
        return d


@dataclass
class TrainResult:
    best_epoch: int
    best_auc: float
    epochs_run: int
    history: list[dict[str, float]]
    seconds: float
    stopped_early: bool
    state: dict[str, Any] = field(repr=False, default_factory=dict)


def predict(
    adapter: FamilyAdapter, table: FeatureTable, rows: np.ndarray, batch: int = 256
) -> np.ndarray:
    """p_fake for the given rows with the head in eval mode (the exported graph's softmax)."""
    head = adapter.head
    head.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(rows), batch):
            logits = head(**table.batch(rows[i : i + batch], adapter_device(adapter)))
            out.append(torch.softmax(logits.float(), dim=1)[:, adapter.fake_index].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def adapter_device(adapter: FamilyAdapter) -> str:
    return str(next(adapter.head.parameters()).device)


def clip_scores(
    table: FeatureTable, rows: np.ndarray, p: np.ndarray, condition: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clip ids, mean window p_fake per clip, label) under one condition, as ``streamd eval``
    pools."""
    k = table.conditions.index(condition)
    sel = table.cond[rows] == k
    clips, p_sel = table.clip[rows][sel], p[sel]
    ids = np.unique(clips)
    means = np.array([p_sel[clips == c].mean() for c in ids])
    labels = np.array([table.label[rows][sel][clips == c][0] for c in ids])
    return ids, means, labels


def auc_over_conditions(table: FeatureTable, rows: np.ndarray, p: np.ndarray) -> float:
    """Clip-level ROC-AUC over the evaluation conditions pooled: what early stopping watches."""
    s, y = [], []
    for cond in EVAL_CONDITIONS:
        _, sc, lab = clip_scores(table, rows, p, cond)
        s.append(sc)
        y.append(lab)
    scores, labels = np.concatenate(s), np.concatenate(y)
    if len(set(labels.tolist())) < 2:
        return float("nan")
    return roc_auc(scores, labels)


def figures(
    table: FeatureTable, rows: np.ndarray, p: np.ndarray, threshold: float | None, far: float
) -> dict[str, Any]:
    """Per condition: clip EER, AUC, the threshold at ``far`` on these reals, and the detection rate
    at ``threshold`` (the manifest's) when given."""
    out: dict[str, Any] = {}
    for cond in EVAL_CONDITIONS:
        _, s, y = clip_scores(table, rows, p, cond)
        n_fake = int(y.sum())
        row: dict[str, Any] = {"n_real": int(len(y) - n_fake), "n_fake": n_fake}
        if 0 < n_fake < len(y):
            op = threshold_at_false_alarm(s, y, far)
            row.update(
                eer=round(equal_error_rate(s, y).eer, 4),
                auc=round(roc_auc(s, y), 4),
                threshold_at_far=round(op.threshold, 6),
                detection_at_far=round(op.detection_rate, 4),
            )
            if threshold is not None:
                flagged = s >= threshold
                row.update(
                    false_alarm_at_threshold=round(float(flagged[y == 0].mean()), 4),
                    detection_at_threshold=round(float(flagged[y == 1].mean()), 4),
                )
        out[cond] = row
    return out


def threshold_for_far(real_scores: np.ndarray, far: float) -> float:
    """The laxest threshold that flags at most ``far`` of these real clips: just above the real
    score ranked ``floor(far * n) + 1`` from the top (1e-6 above, so ONNX's float32 rounding of
    that clip's score cannot flip it)."""
    r = np.sort(np.asarray(real_scores, dtype=np.float64))[::-1]
    k = int(np.floor(far * len(r) + 1e-9))
    return 0.0 if k >= len(r) else float(r[k] + 1e-6)


def pick_threshold(table: FeatureTable, rows: np.ndarray, p: np.ndarray, far: float) -> float:
    """The manifest threshold, from held-out real clips only: the strictest of the per-condition
    thresholds at ``far``, so the false-alarm target holds on clean and on telephone audio alike."""
    found = []
    for cond in EVAL_CONDITIONS:
        _, s, y = clip_scores(table, rows, p, cond)
        if (y == 0).any():
            found.append(threshold_for_far(s[y == 0], far))
    return float(min(1.0, max(found))) if found else 0.5


def _epoch_rows(
    table: FeatureTable, train_clips: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Each training clip heard under one randomly drawn condition this epoch, then shuffled."""
    chosen = {int(c): int(rng.integers(len(table.conditions))) for c in train_clips}
    have = {(int(c), int(k)) for c, k in zip(table.clip, table.cond, strict=True)}
    for c, k in list(chosen.items()):
        if (c, k) not in have:  # an augmented draw cut no window: fall back to the clean one
            chosen[c] = 0
    mask = np.array(
        [chosen.get(int(c), -1) == int(k) for c, k in zip(table.clip, table.cond, strict=True)]
    )
    rows = np.flatnonzero(mask)
    return rng.permutation(rows)


def train(
    adapter: FamilyAdapter,
    table: FeatureTable,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    opts: TrainOptions,
    checkpoint: Path | None = None,
    resume: bool = False,
    show_progress: bool = True,
    title: str = "training",
) -> TrainResult:
    """Train the adapter's head; leaves the best epoch's weights loaded and returns the history."""
    t0 = time.perf_counter()
    torch.manual_seed(opts.seed)
    head = adapter.head
    params = adapter.trainable_parameters()
    train_clips = np.unique(table.clip[train_rows])
    val_eval = val_rows[
        np.isin(table.cond[val_rows], [table.conditions.index(c) for c in EVAL_CONDITIONS])
    ]
    epochs = [
        _epoch_rows(table, train_clips, np.random.default_rng([opts.seed, e]))
        for e in range(1, opts.epochs + 1)
    ]
    total = sum(-(-len(rows) // opts.batch_size) for rows in epochs)
    warm = max(1, int(opts.warmup * total))
    optim = torch.optim.AdamW(params, lr=opts.learning_rate, weight_decay=opts.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    device = adapter_device(adapter)
    w_real, w_fake = class_weights(table.label[train_rows])
    weights = torch.full((adapter.n_labels,), float(w_real), device=device)
    weights[adapter.fake_index] = float(w_fake)
    best: dict[str, Any] = {"auc": -1.0, "epoch": 0, "state": state_of(head)}
    history: list[dict[str, float]] = []
    start, bad = 1, 0
    if resume and checkpoint is not None and checkpoint.exists():
        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if ck["key"] != opts.resume_key():
            raise UsageError(
                f"{checkpoint}: written by a run with other options "
                f"({ck['key']}); drop --resume or match them"
            )
        head.load_state_dict(ck["state"])
        optim.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        torch.set_rng_state(ck["torch_rng"])
        best, history, bad = ck["best"], ck["history"], ck["bad"]
        start = ck["epoch"] + 1
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    stopped = False
    with Progress(
        TextColumn(f"{title} epoch {{task.fields[epoch]}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  val AUC {task.fields[auc]}"),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=True,
    ) as bar:
        task = bar.add_task("train", total=1, epoch=start, loss=float("nan"), auc="-")
        for epoch in range(start, opts.epochs + 1):
            if bad >= opts.patience:
                stopped = True
                break
            rows = epochs[epoch - 1]
            bar.reset(task, total=-(-len(rows) // opts.batch_size), epoch=epoch)
            head.train()
            losses = []
            for i in range(0, len(rows), opts.batch_size):
                b = rows[i : i + opts.batch_size]
                target = torch.from_numpy(
                    np.where(table.label[b] == 1, adapter.fake_index, adapter.real_index)
                ).to(device)
                loss = F.cross_entropy(head(**table.batch(b, device)), target, weight=weights)
                optim.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optim.step()
                sched.step()
                losses.append(loss.item())
                bar.update(task, advance=1, loss=float(np.mean(losses)))
            auc = auc_over_conditions(table, val_eval, predict(adapter, table, val_eval))
            history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_auc": auc})
            bar.update(task, auc=f"{auc:.4f}")
            if auc > best["auc"]:
                best, bad = {"auc": auc, "epoch": epoch, "state": state_of(head)}, 0
            else:
                bad += 1
            if checkpoint is not None:
                _save(
                    checkpoint,
                    {
                        "key": opts.resume_key(),
                        "epoch": epoch,
                        "state": state_of(head),
                        "optim": optim.state_dict(),
                        "sched": sched.state_dict(),
                        "torch_rng": torch.get_rng_state(),
                        "best": best,
                        "history": history,
                        "bad": bad,
                    },
                )
    head.load_state_dict(best["state"])
    return TrainResult(
        int(best["epoch"]),
        float(best["auc"]),
        len(history),
        history,
        time.perf_counter() - t0,
        stopped or bad >= opts.patience,
        best["state"],
    )


def _save(path: Path, obj: dict[str, Any]) -> None:
    """Write then rename, so an interrupted run never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
