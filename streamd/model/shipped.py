"""Built-in detectors shipped inside the package: ``builtin/<name>/manifest.yaml + model.onnx``.

Why: a fresh install must score calls without a download or ../shared. A model in ``model.dir``
(or named by ``model.name``) always wins; the built-in default is the fallback.
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"  # package data
DEFAULT_BUILTIN = "phone-aasist5-lr"
MANIFEST_NAME = "manifest.yaml"


def builtin_manifests() -> dict[str, Path]:
    """Name -> manifest path of every built-in model whose ONNX file is present."""
    if not BUILTIN_DIR.is_dir():
        return {}
    found = {}
    for d in sorted(BUILTIN_DIR.iterdir()):
        m = d / MANIFEST_NAME
        if m.is_file() and any(d.glob("*.onnx")):
            found[d.name] = m
    return found


def builtin_manifest(name: str | None = None) -> Path | None:
    """The named built-in (default: :data:`DEFAULT_BUILTIN`), or None when not shipped."""
    return builtin_manifests().get(name or DEFAULT_BUILTIN)
