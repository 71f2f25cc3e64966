"""Family ``aasist``: the published AASIST / AASIST-L / ASVspoof 5 checkpoints (.pth state dicts).

The graph takes any-length 16 kHz audio and tiles or cuts it to 64,600 samples inside, as the
authors' evaluation does; the manifest says ``pad: repeat`` so the scorer feeds the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamd.errors import UsageError
from streamd.export.common import load_or_fail
from streamd.export.export import ExportPlan
from streamd.model.manifest import WindowSpec, sha256_file

LABELS = ["spoof", "bonafide"]


def checkpoint_plan(
    source: Path,
    family: str,
    what: str,
    load: Callable[[], Any],
    wrap: Callable[[Any], Any],
    architecture: Callable[[Any], str],
    source_url: str | None,
    license: str | None,
    window_min_s: float,
) -> ExportPlan:
    """The plan of a published raw-waveform anti-spoofing .pth (AASIST, RawGAT-ST): labels
    [spoof, bonafide], a fixed 64,600-sample window tiled inside the graph, the catalog's URL,
    license and reported figures when the sha256 is known."""
    from streamd.export.catalog import by_sha256

    if not source.is_file():
        raise UsageError(f"{source}: expected {what} .pth state dict")
    digest = sha256_file(source)
    known = by_sha256(digest)
    model = load_or_fail(str(source), load, f" as {what} checkpoint")
    n = model.config.nb_samp
    metrics: dict[str, Any] = {"reported": known.reported} if known else {}
    return ExportPlan(
        module=wrap(model).eval(),
        family=family,
        labels=list(LABELS),
        fake_index=LABELS.index("spoof"),
        window=WindowSpec(min_s=window_min_s, max_s=n / 16000, pad="repeat"),
        source=source_url or (known.url if known else str(source)),
        license=license or (known.license if known else "see the checkpoint's source"),
        metrics=metrics,
        fixed_length=True,
        extra={
            "checkpoint_sha256": digest,
            "architecture": architecture(model),
            "score_note": "p_fake is softmax(logits)[0]; the authors' score is logit 1 (bona fide)",
        },
    )


def load_plan(
    source: Path,
    config_path: Path | None = None,
    source_url: str | None = None,
    license: str | None = None,
    window_min_s: float = 2.5,
    **_: Any,
) -> ExportPlan:
    from streamd.export.aasist import AasistForExport, load_checkpoint

    return checkpoint_plan(
        source,
        "aasist",
        "an AASIST",
        lambda: load_checkpoint(source, config_path),
        AasistForExport,
        lambda m: getattr(m, "config_source", "AASIST"),
        source_url,
        license,
        window_min_s,
    )
