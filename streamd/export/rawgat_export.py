"""Family ``rawgat-st``: the published RawGAT-ST (mul fusion) checkpoint (a .pth state dict).

The network takes exactly 64,600 samples (its node-wise projections fix the number of frames),
so the graph tiles or cuts any-length 16 kHz audio to that inside, as the authors' evaluation
does, and the manifest says ``pad: repeat`` so the scorer feeds the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamd.errors import UsageError
from streamd.export.common import load_or_fail
from streamd.export.export import ExportPlan
from streamd.model.manifest import WindowSpec, sha256_file

#: output order of the authors' code: their protocol parser labels bona fide 1, spoof 0
LABELS = ["spoof", "bonafide"]


def load_plan(
    source: Path,
    config_path: Path | None = None,
    source_url: str | None = None,
    license: str | None = None,
    window_min_s: float = 2.5,
    **_: Any,
) -> ExportPlan:
    from streamd.export.catalog import by_sha256
    from streamd.export.rawgat import RawGatForExport, load_checkpoint

    if not source.is_file():
        raise UsageError(f"{source}: expected a RawGAT-ST .pth state dict")
    digest = sha256_file(source)
    known = by_sha256(digest)
    model = load_or_fail(
        str(source), lambda: load_checkpoint(source, config_path), " as a RawGAT-ST checkpoint"
    )
    n = model.config.nb_samp
    metrics: dict[str, Any] = {"reported": known.reported} if known else {}
    return ExportPlan(
        module=RawGatForExport(model).eval(),
        family="rawgat-st",
        labels=list(LABELS),
        fake_index=LABELS.index("spoof"),
        window=WindowSpec(min_s=window_min_s, max_s=n / 16000, pad="repeat"),
        source=source_url or (known.url if known else str(source)),
        license=license or (known.license if known else "see the checkpoint's source"),
        metrics=metrics,
        fixed_length=True,
        extra={
            "checkpoint_sha256": digest,
            "architecture": f"RawGAT-ST mul ({model.config_source})",
            "score_note": "p_fake is softmax(logits)[0]; the authors' score is logit 1 (bona fide)",
        },
    )
