"""``wav2vec2-seqcls`` for ``streamd train``: the classifier head of a Hugging Face checkpoint.

``--train head`` trains ``projector`` + ``classifier``. The model pools by a plain mean over frames
(no attention mask at run time), and the projector is linear, so ``mean(projector(h)) ==
projector(mean(h))``: caching the mean of the last hidden state per window is exact, and epochs
never run the transformer. Unfreezing the top transformer layers (as the cards do) needs the
per-frame hidden states of windows of different lengths cached and masked; that is not written yet,
and ``graph``/``all`` say so rather than train something else.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamd.errors import UsageError
from streamd.export.export import ExportPlan
from streamd.model.manifest import sha256_file
from streamd.training.data import fingerprint
from streamd.training.features import FamilyAdapter, HeadCall, state_of


class Wav2Vec2Adapter(FamilyAdapter):
    family = "wav2vec2-seqcls"

    def __init__(self, folder: Path, setting: str, device: str = "cpu") -> None:
        from streamd.export import wav2vec2

        if setting != "head":
            raise UsageError(
                f"--train {setting}: for wav2vec2-seqcls only --train head "
                "(projector + classifier) is implemented; training transformer "
                "layers needs per-frame caching that is not written yet"
            )
        plan = wav2vec2.load_plan(folder)
        if len(plan.labels) != 2 or not isinstance(plan.fake_index, int):
            raise UsageError(
                f"{folder}: streamd train needs a two-label classifier (labels {plan.labels})"
            )
        self.source = folder
        self.setting = setting
        self.device = device
        self.window = plan.window
        self.normalize = plan.extra.get("normalize") == "zero_mean_unit_var"
        self.model = plan.module.model
        if getattr(self.model.config, "use_weighted_layer_sum", False):
            raise UsageError(
                f"{folder}: use_weighted_layer_sum models pool "
                "hidden layers; not supported by streamd train"
            )
        self.fake_index, self.real_index, self.labels = (
            plan.fake_index,
            1 - plan.fake_index,
            plan.labels,
        )
        for name, p in self.model.named_parameters():
            p.requires_grad_(name.startswith(("projector.", "classifier.")))
        m = self.model
        self._head = HeadCall(m, lambda pooled: m.classifier(m.projector(pooled)))
        self.trained_layers = "projector, classifier"
        self.frozen_layers = (
            "wav2vec2 (CNN feature encoder, feature projection, every transformer layer)"
        )
        weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
        self.cache_key = fingerprint(
            "wav2vec2-seqcls",
            [sha256_file(p) for p in weights],
            self.normalize,
            self.window.min_s,
            self.window.max_s,
        )
        self.base_state = state_of(self._head)
        self.to(device)

    @property
    def head(self) -> nn.Module:
        return self._head

    def _fit(self, window: np.ndarray) -> np.ndarray:
        """The runtime's ``pad: zero`` rule: cut to max_s, zero-pad up to min_s."""
        lo, hi = round(self.window.min_s * 16000), round(self.window.max_s * 16000)
        x = np.asarray(window, np.float32)[:hi]
        return np.pad(x, (0, max(0, lo - len(x))))

    def features(self, windows: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        from streamd.export.common import zero_mean_unit_var

        self.model.eval()
        out = []
        with torch.inference_mode():
            for (
                w
            ) in windows:  # one at a time: windows differ in length and must not be padded together
                x = torch.from_numpy(self._fit(w))[None].to(self.device)
                x = zero_mean_unit_var(x) if self.normalize else x
                out.append(
                    self.model.wav2vec2(input_values=x)
                    .last_hidden_state.mean(dim=1)[0]
                    .cpu()
                    .numpy()
                )
        return {"pooled": np.stack(out)}

    def export_plan(self, work_dir: Path, name: str) -> ExportPlan:
        from streamd.export import wav2vec2

        folder = work_dir / name
        self.model.to("cpu").save_pretrained(folder)
        for extra in ("preprocessor_config.json",):
            if (self.source / extra).exists():
                shutil.copy(self.source / extra, folder / extra)
        plan = wav2vec2.load_plan(folder, fake_index=self.fake_index)
        plan.extra["export_from"] = str(folder.resolve())
        plan.extra["export_options"] = {"fake_index": self.fake_index}
        self.model.to(self.device)
        return plan
