"""A Triton model repository for an installed model: ``DIR/NAME/1/model.onnx`` + ``config.pbtxt``.

For a full Triton (GPU nodes) with its onnxruntime backend: dynamic batching across every client
and a GPU ``instance_group``. Tensor names are the manifest's, so daemons with
``model.backend: triton`` use this server exactly as they use ``streamd serve-model``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from streamd.errors import ModelError
from streamd.model.manifest import Manifest, load_manifest, sha256_file


def config_pbtxt(
    manifest: Manifest,
    name: str,
    max_batch: int = 64,
    queue_delay_us: int = 2000,
    kind: str = "KIND_GPU",
    instances: int = 1,
) -> str:
    dims = f"[ {manifest.max_samples} ]" if manifest.fixed_length else "[ -1 ]"
    return f"""name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch}
input [
  {{
    name: "{manifest.input}"
    data_type: TYPE_FP32
    dims: {dims}
  }}
]
output [
  {{
    name: "{manifest.output}"
    data_type: TYPE_FP32
    dims: [ {len(manifest.labels)} ]
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: {queue_delay_us}
}}
instance_group [
  {{
    count: {instances}
    kind: {kind}
  }}
]
"""


def write_triton_repo(
    manifest_path: Path,
    repo: Path,
    name: str | None = None,
    max_batch: int = 64,
    queue_delay_us: int = 2000,
    kind: str = "KIND_GPU",
    instances: int = 1,
) -> Path:
    """Write (or replace) ``repo/NAME``; return that folder. The ONNX file is checked first."""
    manifest = load_manifest(manifest_path)
    onnx = (manifest_path.parent / manifest.onnx).resolve()
    if not onnx.exists():
        raise ModelError(f"{manifest_path}: ONNX file {onnx} is missing")
    if manifest.sha256 and sha256_file(onnx) != manifest.sha256:
        raise ModelError(f"{onnx}: sha256 differs from the manifest (file changed or corrupt)")
    if list(onnx.parent.glob(onnx.name + ".data")):
        raise ModelError(f"{onnx}: external weight files are not copied; re-export as one file")
    name = name or manifest.name
    folder = repo / name
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx, version / "model.onnx")
    text = config_pbtxt(manifest, name, max_batch, queue_delay_us, kind, instances)
    (folder / "config.pbtxt").write_text(text)
    return folder
