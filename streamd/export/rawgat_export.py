"""Family ``rawgat-st``: the published RawGAT-ST (mul fusion) checkpoint (a .pth state dict).

The network takes exactly 64,600 samples (its node-wise projections fix the number of frames),
so the graph tiles or cuts any-length 16 kHz audio to that inside, as the authors' evaluation
does, and the manifest says ``pad: repeat`` so the scorer feeds the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamd.export.aasist_export import checkpoint_plan
from streamd.export.export import ExportPlan

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
    from streamd.export.rawgat import RawGatForExport, load_checkpoint

    return checkpoint_plan(
        source,
        "rawgat-st",
        "a RawGAT-ST",
        lambda: load_checkpoint(source, config_path),
        RawGatForExport,
        lambda m: f"RawGAT-ST mul ({m.config_source})",
        source_url,
        license,
        window_min_s,
    )
