"""Frozen front ends, cached once; the trainable upper layers; the export wrapper, per family.

On a 2-core CPU the AASIST encoder costs about half a second per window and the graph layers
above it a few hundredths, so ``streamd train`` runs the frozen part once per (clip window,
condition), stores its output on disk, and every epoch (and every leave-one-generator-out fold)
only runs the trainable part.

AASIST (``--train``); ``head`` and ``graph`` share one disk cache, the graph node inputs:

=========  ========================================================  ===========================
setting    frozen (not updated)                                      trained
=========  ========================================================  ===========================
``head``   sinc filterbank, first BN, 6 residual blocks (cached),    ``out_layer`` (the linear
           graph attention, pools, HS-GAL and readout (run once in   readout -> 2 logits)
           memory on the cached nodes, base weights)
``graph``  sinc filterbank, first BN, 6 residual blocks; cached as   ``pos_S``, ``GAT_layer_S/T``,
           the spectral and temporal node inputs (|encoder map|      ``pool_S/T``, both HS-GAL
           max over time / over frequency, 5 KB per window)          branches with their pools
                                                                     and stack nodes
                                                                     (``master1/2``),
                                                                     ``out_layer``
``all``    only the fixed sinc filterbank (a buffer, not a           every parameter (GPU)
           parameter); the tiled waveform is kept in memory
=========  ========================================================  ===========================
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from streamd.errors import StreamdError, UsageError
from streamd.export.export import ExportPlan
from streamd.model.manifest import WindowSpec, sha256_file
from streamd.offline.datasets import LabeledClip
from streamd.pipeline.audio import load_audio
from streamd.training.augment import AugmentConfig
from streamd.training.data import WindowRules, fingerprint, render, training_windows

SETTINGS: dict[str, str] = {
    "head": "output layer only; everything below is frozen and its readout cached",
    "graph": (
        "graph attention, HS-GAL and output layers; sinc front end + encoder frozen and cached"
    ),
    "all": "every layer from the waveform up (meant for a GPU; nothing is cached on disk)",
}


class FamilyAdapter(ABC):
    """What a family gives the trainer: a frozen feature function, a trainable head, an export."""

    family: str
    setting: str
    cache_key: str  # same key = same frozen features (checkpoint, frozen part)
    disk_cache: bool = True
    window: (
        WindowSpec  # the window range the exported model declares (the daemon fits windows to it)
    )
    fake_index: int = 0
    real_index: int = 1
    n_labels: int = 2
    frozen_layers: str = ""
    trained_layers: str = ""
    base_state: dict[str, Any]  # the checkpoint's weights of the head, for leave-one-out folds

    @abstractmethod
    def features(self, windows: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Frozen part on a few windows (any lengths) -> named arrays, first axis one per window.

        This is the expensive stage, cached on disk under ``cache_key``."""

    def derive(self, feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A cheap frozen stage run on the cached arrays in memory (settings sharing one cache)."""
        return feats

    @property
    @abstractmethod
    def head(self) -> nn.Module:
        """The trainable part: ``head(**features) -> logits [B, n_labels]``."""

    @abstractmethod
    def export_plan(self, work_dir: Path, name: str) -> ExportPlan:
        """An ``ExportPlan`` for the model with the head's current weights (saved under
        work_dir)."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.head.parameters() if p.requires_grad]

    def to(self, device: str) -> None:
        self.head.to(device)


class HeadCall(nn.Module):
    """A head that runs ``fn`` over a model whose parameters it shares (so state_dict is the
    model's)."""

    def __init__(self, model: nn.Module, fn: Callable[..., Tensor]) -> None:
        super().__init__()
        self.model = model
        self._fn = fn

    def forward(self, **feats: Tensor) -> Tensor:
        return self._fn(**feats)


#: parameter-name prefixes each AASIST setting freezes ("" = all but out_layer)
AASIST_FROZEN: dict[str, tuple[str, ...]] = {
    "head": ("",),
    "graph": ("conv_time.", "first_bn.", "encoder."),
    "all": (),
}


class AasistAdapter(FamilyAdapter):
    family = "aasist"

    def __init__(
        self, checkpoint: Path, setting: str, device: str = "cpu", config_path: Path | None = None
    ) -> None:
        from streamd.export.aasist import load_checkpoint

        if setting not in SETTINGS:
            raise UsageError(f"--train {setting}: choose one of {', '.join(SETTINGS)}")
        self.checkpoint = checkpoint
        self.config_path = config_path
        self.setting = setting
        self.device = device
        self.model = load_checkpoint(checkpoint, config_path)
        self.n_samples = self.model.config.nb_samp
        self.window = WindowSpec(
            min_s=2.5, max_s=self.n_samples / 16000, pad="repeat"
        )  # as aasist_export declares
        frozen = AASIST_FROZEN[setting]
        for name, p in self.model.named_parameters():
            p.requires_grad_(
                not (any(name.startswith(f) for f in frozen) and not name.startswith("out_layer."))
            )
        m = self.model
        fns: dict[str, Callable[..., Tensor]] = {
            "head": lambda embed: m.out_layer(m.drop(embed)),
            "graph": lambda spectral, temporal: m.out_layer(
                m.drop(m.graph_embed(spectral, temporal))
            ),
            "all": lambda wave: m(wave),
        }
        self._head = HeadCall(m, fns[setting])
        self.disk_cache = setting != "all"
        # head and graph share one cache: head derives its readout from the cached graph nodes
        kind = "wave" if setting == "all" else "nodes"
        self.cache_key = fingerprint(
            "aasist", sha256_file(checkpoint), str(config_path), kind, self.n_samples
        )
        trained = sorted({n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad})
        self.trained_layers = ", ".join(trained)
        self.frozen_layers = ", ".join(
            sorted({n.split(".")[0] for n, p in m.named_parameters() if not p.requires_grad})
        )
        self.base_state = state_of(self._head)
        self.to(device)

    @property
    def head(self) -> nn.Module:
        return self._head

    def features(self, windows: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        from streamd.export.aasist import tile_to_length

        m = self.model
        was_training = m.training
        m.eval()
        try:
            with torch.inference_mode():
                wave = torch.stack(
                    [
                        tile_to_length(
                            torch.from_numpy(np.asarray(w, np.float32))[None], self.n_samples
                        )[0]
                        for w in windows
                    ]
                ).to(self.device)
                if self.setting == "all":
                    return {"wave": wave.cpu().numpy()}
                spectral, temporal = m.graph_nodes(m.encode(wave))
                return {"spectral": spectral.cpu().numpy(), "temporal": temporal.cpu().numpy()}
        finally:
            m.train(was_training)

    def derive(self, feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.setting != "head":
            return feats
        m = self.model
        was_training = m.training
        m.eval()
        try:
            with torch.inference_mode():
                out = [
                    m.graph_embed(
                        torch.from_numpy(feats["spectral"][i : i + 256]).to(self.device),
                        torch.from_numpy(feats["temporal"][i : i + 256]).to(self.device),
                    )
                    .cpu()
                    .numpy()
                    for i in range(0, len(feats["spectral"]), 256)
                ]
            return {"embed": np.concatenate(out)}
        finally:
            m.train(was_training)

    def export_plan(self, work_dir: Path, name: str) -> ExportPlan:
        from streamd.export import aasist_export

        work_dir.mkdir(parents=True, exist_ok=True)
        pth = work_dir / f"{name}.pth"
        self.model.to("cpu")
        torch.save(self.model.state_dict(), pth)
        plan = aasist_export.load_plan(pth, config_path=self.config_path)
        plan.extra["export_from"] = str(pth.resolve())
        plan.extra["export_options"] = (
            {"config_path": str(self.config_path)} if self.config_path else {}
        )
        self.model.to(self.device)
        return plan


def make_adapter(
    family: str, checkpoint: Path, setting: str, device: str, config_path: Path | None = None
) -> FamilyAdapter:
    """The family's frozen features, trainable head and export, for ``--train setting``."""
    if family == "aasist":
        return AasistAdapter(checkpoint, setting, device, config_path)
    if family == "wav2vec2-seqcls":
        from streamd.training.backbone import Wav2Vec2Adapter

        return Wav2Vec2Adapter(checkpoint, setting, device)
    raise UsageError(
        f"streamd train supports the families aasist and wav2vec2-seqcls, not {family!r}"
    )


@dataclass
class FeatureTable:
    """Cached features of every window: row i belongs to clip ``clip[i]`` under
    ``conditions[cond[i]]``."""

    feats: dict[str, np.ndarray]
    clip: np.ndarray
    cond: np.ndarray
    label: np.ndarray
    conditions: list[str]
    skipped: list[str] = field(
        default_factory=list
    )  # clips that gave no window or could not be read

    def __len__(self) -> int:
        return len(self.clip)

    def batch(self, rows: np.ndarray, device: str) -> dict[str, Tensor]:
        return {k: torch.from_numpy(v[rows]).to(device) for k, v in self.feats.items()}


@dataclass(frozen=True)
class FeatureRecipe:
    """Everything besides the adapter that the cached windows depend on."""

    rules: WindowRules
    conditions: tuple[str, ...]
    max_windows: int = 4
    short: str = "tile"
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def key(self, clip: LabeledClip, condition: str) -> str:
        stat = clip.path.stat()
        aug = (self.seed, repr(self.augment)) if condition.startswith("aug") else ()
        return fingerprint(
            str(clip.path.resolve()),
            stat.st_size,
            stat.st_mtime_ns,
            condition,
            aug,
            self.rules.key(),
            self.max_windows,
            self.short,
        )


def _windows_features(
    adapter: FamilyAdapter, windows: list[np.ndarray], batch: int
) -> dict[str, np.ndarray]:
    parts = [adapter.features(windows[i : i + batch]) for i in range(0, len(windows), batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def build_table(
    clips: list[LabeledClip],
    adapter: FamilyAdapter,
    recipe: FeatureRecipe,
    cache_dir: Path | None,
    show_progress: bool = True,
    batch: int = 8,
) -> FeatureTable:
    """Frozen features for every (clip, condition), from the cache where present."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    folder = cache_dir / adapter.cache_key if cache_dir is not None and adapter.disk_cache else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    chunks: list[tuple[int, int, dict[str, np.ndarray]]] = []
    skipped: list[str] = []
    with Progress(
        TextColumn("frozen features"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=True,
    ) as bar:
        task = bar.add_task("features", total=len(clips) * len(recipe.conditions), note="")
        for ci, clip in enumerate(clips):
            audio: np.ndarray | None = None
            for k, cond in enumerate(recipe.conditions):
                bar.advance(task)
                path = folder / f"{recipe.key(clip, cond)}.npz" if folder is not None else None
                if path is not None and path.exists():
                    with np.load(path) as z:
                        feats = {n: z[n] for n in z.files}
                else:
                    if audio is None:
                        try:
                            audio = load_audio(clip.path)
                        except StreamdError as exc:
                            skipped.append(f"{clip.path}: {exc}")
                            break
                    bar.update(task, note=clip.path.name[:30])
                    wins = training_windows(
                        render(audio, cond, clip, recipe.seed, recipe.augment),
                        recipe.rules,
                        recipe.max_windows,
                        recipe.short,
                    )
                    feats = _windows_features(adapter, wins, batch) if wins else {}
                    if path is not None:
                        tmp = path.with_suffix(".tmp.npz")
                        np.savez(tmp, **feats)
                        tmp.replace(path)
                if feats:
                    chunks.append((ci, k, feats))
                elif cond == recipe.conditions[0]:
                    skipped.append(f"{clip.path}: no window")
    if not chunks:
        raise UsageError("no clip gave a training window (all unreadable or silent)")
    names = list(chunks[0][2])
    n_rows = [len(f[names[0]]) for _, _, f in chunks]
    return FeatureTable(
        feats=adapter.derive({n: np.concatenate([f[n] for _, _, f in chunks]) for n in names}),
        clip=np.repeat([c for c, _, _ in chunks], n_rows),
        cond=np.repeat([k for _, k, _ in chunks], n_rows),
        label=np.repeat([clips[c].is_fake for c, _, _ in chunks], n_rows),
        conditions=list(recipe.conditions),
        skipped=skipped,
    )


def state_of(module: nn.Module) -> dict[str, Any]:
    """A detached CPU copy of a module's state, for the best-epoch snapshot and checkpoints."""
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}
