"""The model manifest (``NAME.yaml`` beside ``NAME.onnx``): what the graph expects and what it
means."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streamd.errors import ModelError, NoModelError

MANIFEST_SUFFIX = ".yaml"
# Feature extractors that run outside the graph. None ship today: every graph takes raw 16 kHz
# audio. A manifest naming one is refused here, in one line, rather than failing at import.
FRONT_ENDS: tuple[str, ...] = ()


class WindowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_s: float = Field(gt=0)
    max_s: float = Field(gt=0)
    pad: Literal["repeat", "zero"] = "zero"

    @model_validator(mode="after")
    def _order(self) -> WindowSpec:
        if self.min_s > self.max_s:
            raise ValueError(f"min_s ({self.min_s}) exceeds max_s ({self.max_s})")
        return self


class Manifest(BaseModel):
    """Validated manifest. ``fixed_length`` means the graph always sees exactly max_s of audio."""

    model_config = ConfigDict(extra="allow")

    name: str
    family: str
    onnx: str
    sha256: str | None = None
    sample_rate: int = 16000
    window: WindowSpec
    input: str
    output: str
    labels: list[str] = Field(min_length=1)
    fake_index: int | list[int]
    activation: Literal["softmax", "sigmoid"] = "softmax"
    threshold: float = Field(0.5, ge=0, le=1)
    source: str = "unknown"
    license: str = "unknown"
    metrics: dict[str, Any] = {}
    front_end: str | None = None
    fixed_length: bool = False
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    export: dict[str, Any] = {}

    @field_validator("onnx")
    @classmethod
    def _inside_model_dir(cls, value: str) -> str:
        """The graph must sit beside its manifest: a manifest dropped into ``model.dir`` (or
        pulled from a mirror) must not make the daemon load files from elsewhere."""
        path = Path(value)
        if not value or path.is_absolute() or ".." in path.parts or value.startswith("~"):
            raise ValueError(
                f"must be a file name relative to the manifest's folder, got {value!r}"
            )
        return value

    @field_validator("front_end")
    @classmethod
    def _known_front_end(cls, value: str | None) -> str | None:
        if value is not None and value not in FRONT_ENDS:
            known = ", ".join(FRONT_ENDS) or "none: the graph must take raw 16 kHz audio"
            raise ValueError(f"{value!r} is not a front end this streamd knows (known: {known})")
        return value

    @model_validator(mode="after")
    def _indices(self) -> Manifest:
        idx = self.fake_indices
        if not idx or any(not 0 <= i < len(self.labels) for i in idx):
            raise ValueError(f"fake_index {self.fake_index} is outside labels {self.labels}")
        if self.sample_rate != 16000:
            raise ValueError(
                f"sample_rate must be 16000 (the model contract), got {self.sample_rate}"
            )
        return self

    @property
    def fake_indices(self) -> list[int]:
        return list(self.fake_index) if isinstance(self.fake_index, list) else [self.fake_index]

    @property
    def min_samples(self) -> int:
        return round(self.window.min_s * self.sample_rate)

    @property
    def max_samples(self) -> int:
        return round(self.window.max_s * self.sample_rate)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(path: str | Path) -> Manifest:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{p}: manifest not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelError(f"{p}: cannot read manifest ({exc})".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ModelError(f"{p}: manifest must be a mapping")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(x) for x in first["loc"]) or "(top level)"
        msg = (
            "missing" if first["type"] == "missing" else first["msg"].removeprefix("Value error, ")
        )
        more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ModelError(f"{p}: manifest key {key}: {msg}{more}") from None


def write_manifest(manifest: Manifest, path: str | Path) -> None:
    data = manifest.model_dump(mode="json", exclude_none=True)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def installed_manifests(model_dir: str | Path) -> list[Path]:
    d = Path(model_dir)
    if not d.is_dir():
        return []
    return sorted(
        p
        for p in d.glob(f"*{MANIFEST_SUFFIX}")
        if p.with_suffix(".onnx").exists() or _names_onnx(p)
    )


def _names_onnx(p: Path) -> bool:
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "onnx" in data


DEFAULT_MODEL = "aasist-l"  # chosen when model.name is null and several models are installed
HOW_TO_GET_A_MODEL = (
    "install one with `streamd models pull aasist-l` (needs the network), or from a local file: "
    "`streamd models export --family aasist --from AASIST-L.pth --name aasist-l`, or from a "
    "Hugging Face folder: `streamd models export --from PATH --name NAME` (see models/README.md)"
)


def resolve_manifest(model_dir: str | Path, name: str | None) -> Path:
    """Find the manifest to use: the named one, or the only one installed."""
    d = Path(model_dir)
    if name:
        candidate = Path(name)
        if candidate.suffix in (".yaml", ".yml") and candidate.exists():
            return candidate
        p = d / f"{name}{MANIFEST_SUFFIX}"
        if p.exists():
            return p
        from streamd.model.shipped import builtin_manifest

        shipped = builtin_manifest(name)
        if shipped is not None:
            return shipped
        found = [m.stem for m in installed_manifests(d)]
        have = f"installed: {', '.join(found)}" if found else "no models are installed"
        raise NoModelError(f"model {name!r} not found in {d} ({have}); {HOW_TO_GET_A_MODEL}")
    found_paths = installed_manifests(d)
    if not found_paths:
        from streamd.model.shipped import builtin_manifest

        shipped = builtin_manifest()  # nothing installed: the detector shipped in the package
        if shipped is not None:
            return shipped
        raise NoModelError(f"no model installed in {d}/; {HOW_TO_GET_A_MODEL}")
    if len(found_paths) > 1:
        preferred = [m for m in found_paths if m.stem == DEFAULT_MODEL]
        if preferred:
            return preferred[0]
        names = ", ".join(m.stem for m in found_paths)
        raise NoModelError(
            f"several models in {d}/ ({names}): choose one with model.name or --model"
        )
    return found_paths[0]
