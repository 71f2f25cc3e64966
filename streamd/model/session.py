"""Load a model for inference: onnxruntime session, the provider it really got, and p_fake.

The provider in use is read back from ``session.get_providers()`` after the session is built:
onnxruntime-gpu falls back to CPU silently when CUDA libraries are missing, and
``get_available_providers()`` only says what the wheel was compiled with.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamd.errors import ModelError
from streamd.model.manifest import Manifest, load_manifest, sha256_file

log = logging.getLogger("streamd.model")

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
SHORT_NAMES = {v: k for k, v in PROVIDERS.items()}


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError(
            "onnxruntime is not installed: pip install 'streamd[cpu]' (or 'streamd[gpu]' for CUDA)"
        ) from None
    return ort


@dataclass
class Detector:
    """One loaded model: manifest + session. Thread-safe for ``infer`` (onnxruntime sessions are)."""

    manifest: Manifest
    path: Path
    session: Any
    provider: str
    front_end: Any = None

    @classmethod
    def load(
        cls,
        manifest_path: str | Path,
        providers: Sequence[str] = ("cuda", "cpu"),
        require_gpu: bool = False,
        threads: int = 0,
        check_sha: bool = True,
        spin: bool = False,
    ) -> Detector:
        mpath = Path(manifest_path)
        manifest = load_manifest(mpath)
        onnx_path = (mpath.parent / manifest.onnx).resolve()
        if not onnx_path.exists():
            raise ModelError(f"{mpath}: ONNX file {onnx_path} is missing")
        if check_sha and manifest.sha256 and sha256_file(onnx_path) != manifest.sha256:
            raise ModelError(
                f"{onnx_path}: sha256 differs from the manifest (file changed or corrupt)"
            )
        ort = _import_ort()
        wanted = [PROVIDERS[p] for p in providers if p in PROVIDERS]
        available = set(ort.get_available_providers())
        requested = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        if not spin:
            # Idle inference threads spin-wait by default: that burns the cores the event loop
            # needs for RTP, VAD and websockets between batches (3x fewer calls held when on).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=requested)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{onnx_path}: not a loadable ONNX model ({first[:300]})") from None
        actual = session.get_providers()[0]
        short = SHORT_NAMES.get(actual, actual)
        if require_gpu and short == "cpu":
            raise ModelError(
                f"model.require_gpu is true but onnxruntime runs {manifest.name} on CPU "
                f"(asked for {requested}, got {session.get_providers()}); install onnxruntime-gpu "
                "with matching CUDA/cuDNN libraries"
            )
        det = cls(manifest=manifest, path=onnx_path, session=session, provider=short)
        det._check_signature()
        if manifest.front_end:
            from streamd.model.frontends import get_front_end

            det.front_end = get_front_end(manifest.front_end, manifest)
        if short != (providers[0] if providers else "cpu"):
            log.warning(
                "model %s: asked for %s, running on %s", manifest.name, list(providers), short
            )
        log.info(
            "model %s loaded: provider=%s (session providers %s)",
            manifest.name,
            short,
            session.get_providers(),
        )
        return det

    def _check_signature(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        m = self.manifest
        if m.input not in inputs:
            raise ModelError(
                f"{self.path}: graph has no input {m.input!r} (it has {sorted(inputs)})"
            )
        if m.output not in outputs:
            raise ModelError(
                f"{self.path}: graph has no output {m.output!r} (it has {sorted(outputs)})"
            )
        inp = inputs[m.input]
        if m.front_end is None and (len(inp.shape) != 2 or "float" not in inp.type):
            raise ModelError(
                f"{self.path}: input {m.input!r} is {inp.type} {inp.shape}; the model contract needs "
                "float32 [batch, samples] raw 16 kHz audio"
            )

    @property
    def name(self) -> str:
        return self.manifest.name

    def prepare(self, window: np.ndarray) -> np.ndarray:
        """Fit one 16 kHz window to what the graph expects, by the manifest's pad rule."""
        m = self.manifest
        x = np.asarray(window, dtype=np.float32)
        if m.window.pad == "repeat":
            n = m.max_samples
            reps = -(-n // max(len(x), 1))
            x = np.tile(x, reps)[:n] if len(x) else np.zeros(n, np.float32)
        else:
            if len(x) > m.max_samples:
                x = x[: m.max_samples]
            if len(x) < m.min_samples:
                x = np.pad(x, (0, m.min_samples - len(x)))
        return x

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits ``[batch, n_labels]`` for prepared windows of one length."""
        feed = (
            self.front_end(batch)
            if self.front_end is not None
            else batch.astype(np.float32, copy=False)
        )
        out = self.session.run([self.manifest.output], {self.manifest.input: feed})[0]
        return np.asarray(out, dtype=np.float32)

    def p_fake(self, logits: np.ndarray) -> np.ndarray:
        idx = self.manifest.fake_indices
        z = np.asarray(logits, dtype=np.float64)
        if self.manifest.activation == "sigmoid":
            probs = 1.0 / (1.0 + np.exp(-z))
            return np.clip(probs[:, idx].max(axis=1), 0.0, 1.0)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        probs = e / e.sum(axis=1, keepdims=True)
        return np.clip(probs[:, idx].sum(axis=1), 0.0, 1.0)

    def score_windows(self, windows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(p_fake, logits) for windows of any lengths: one run per distinct prepared length.

        Grouping by length instead of zero-padding to the longest keeps every score independent
        of what else shared the batch, which padding would not for models that normalize per window.
        """
        prepared = [self.prepare(w) for w in windows]
        n_labels = len(self.manifest.labels)
        logits = np.zeros((len(prepared), n_labels), dtype=np.float32)
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(prepared):
            by_len.setdefault(len(w), []).append(i)
        for idxs in by_len.values():
            out = self.infer(np.stack([prepared[i] for i in idxs]))
            if out.ndim != 2 or out.shape[1] != n_labels:
                raise ModelError(
                    f"{self.path}: output shape {out.shape}, manifest has {n_labels} labels"
                )
            logits[idxs] = out
        return self.p_fake(logits).astype(np.float32), logits

    def describe(self) -> dict[str, Any]:
        return {"name": self.manifest.name, "sha256": self.manifest.sha256 or ""}
