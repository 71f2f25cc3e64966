"""Labelled clips for eval and training: folders per class, or a CSV with ``path,label`` columns.

The CSV may carry ``system`` (the generator of a fake), ``speaker``, ``corpus`` and ``group``;
paths are relative to the CSV's folder (as in ../shared/data/manifest.csv).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from streamd.errors import UsageError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".au", ".aiff", ".aif"}
REAL = {"real", "bonafide", "bona-fide", "bona fide", "human", "genuine", "0"}
FAKE = {"fake", "spoof", "spoofed", "synthetic", "deepfake", "generated", "1"}


@dataclass(frozen=True)
class LabeledClip:
    path: Path
    label: str  # "real" or "fake"
    system: str = ""
    speaker: str = ""
    source: str = ""  # corpus or first folder: results are reported per source

    @property
    def is_fake(self) -> int:
        return int(self.label == "fake")

    @property
    def group(self) -> str:
        """What a validation split must never cut across: the speaker, else the source."""
        return self.speaker or self.source or self.path.parent.name


def normalize_label(raw: str, where: str) -> str:
    v = raw.strip().lower()
    if v in REAL:
        return "real"
    if v in FAKE:
        return "fake"
    raise UsageError(f"{where}: label {raw!r} is neither real ({', '.join(sorted(REAL))}) nor fake")


def from_csv(path: Path, default_label: str | None = None) -> list[LabeledClip]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read CSV ({exc})") from None
    if not rows or "path" not in rows[0]:
        raise UsageError(f"{path}: needs a header with at least a 'path' column (and 'label')")
    clips = []
    for i, row in enumerate(rows, start=2):
        label = row.get("label") or default_label
        if not label:
            raise UsageError(f"{path}:{i}: no label (add a 'label' column or use --real/--fake)")
        p = Path(row["path"])
        if not p.is_absolute():
            p = path.parent / p
        source = row.get("source") or Path(row["path"]).parts[0]
        clips.append(
            LabeledClip(
                p,
                normalize_label(label, f"{path}:{i}"),
                system=row.get("system", "") or "",
                speaker=row.get("group") or row.get("speaker", "") or "",
                source=source,
            )
        )
    return clips


def from_dir(folder: Path, label: str) -> list[LabeledClip]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise UsageError(f"{folder}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    return [
        LabeledClip(p, label, system=label if label == "real" else folder.name, source=folder.name)
        for p in files
    ]


def load_labeled(
    data: list[str] | None = None, real: list[str] | None = None, fake: list[str] | None = None
) -> list[LabeledClip]:
    clips: list[LabeledClip] = []
    for spec, label in (
        [(d, None) for d in data or []]
        + [(r, "real") for r in real or []]
        + [(f, "fake") for f in fake or []]
    ):
        p = Path(spec)
        if p.is_dir():
            if label is None:
                raise UsageError(f"{p}: a folder needs --real or --fake to say its label")
            clips += from_dir(p, label)
        elif p.is_file():
            clips += from_csv(p, label)
        else:
            raise UsageError(f"{p}: no such file or folder")
    if not clips:
        raise UsageError(
            "no clips given: pass a CSV with path,label columns, or --real DIR --fake DIR"
        )
    return clips
