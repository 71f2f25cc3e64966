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

from streamd.config.sections import ModelConfig
from streamd.errors import ModelError
from streamd.model.binding import BoundRunner, Buckets
from streamd.model.manifest import Manifest, load_manifest, sha256_file
from streamd.model.reuse import FrontEndReuse

log = logging.getLogger("streamd.model")

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
SHORT_NAMES = {v: k for k, v in PROVIDERS.items()}


OPTIMIZE_LEVELS = ("disabled", "basic", "extended", "all")


@dataclass(frozen=True)
class RuntimeOptions:
    """How the session runs, beyond the provider: what docs/capacity.md measures.

    ``buckets``/``io_binding`` None means automatic: on for GPU providers, off on CPU (padding a
    CPU batch only adds work; binding saves nothing there). ``optimized_dir`` keeps the graph
    onnxruntime optimised for this provider, so the next start loads it without optimising.
    """

    optimize: str = "all"
    optimized_dir: Path | None = None
    buckets: tuple[int, ...] | None = None
    io_binding: bool | None = None
    cudnn_conv_algo_search: str = "EXHAUSTIVE"  # once per bucket shape, then cached
    arena_extend_strategy: str = "kSameAsRequested"
    trt_fp16: bool = False
    trt_cache_dir: Path | None = None
    device_id: int = 0
    reuse_front_end: bool = False

    @classmethod
    def from_config(cls, m: ModelConfig) -> RuntimeOptions:
        return cls(
            optimize=m.optimize,
            optimized_dir=Path(m.optimized_dir) if m.optimized_dir else None,
            buckets=tuple(m.batch_buckets) if m.batch_buckets is not None else None,
            io_binding=m.io_binding,
            reuse_front_end=m.reuse_front_end,
        )

    def provider_options(self, name: str) -> dict[str, Any]:
        if name == "CUDAExecutionProvider":
            return {
                "device_id": self.device_id,
                "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
                "arena_extend_strategy": self.arena_extend_strategy,
                "do_copy_in_default_stream": True,
            }
        if name == "TensorrtExecutionProvider":
            opts: dict[str, Any] = {"device_id": self.device_id, "trt_fp16_enable": self.trt_fp16}
            if self.trt_cache_dir is not None:
                opts |= {"trt_engine_cache_enable": True}
                opts |= {"trt_engine_cache_path": str(self.trt_cache_dir)}
            return opts
        return {}


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
    """One loaded model: manifest + session. Thread-safe for ``infer`` (onnxruntime sessions
    are)."""

    manifest: Manifest
    path: Path
    session: Any
    provider: str
    front_end: Any = None
    buckets: Buckets | None = None
    runner: BoundRunner | None = None
    reuse: FrontEndReuse | None = None

    @classmethod
    def load(
        cls,
        manifest_path: str | Path,
        providers: Sequence[str] = ("cuda", "cpu"),
        require_gpu: bool = False,
        threads: int = 0,
        check_sha: bool = True,
        spin: bool = False,
        runtime: RuntimeOptions | None = None,
    ) -> Detector:
        mpath = Path(manifest_path)
        manifest = load_manifest(mpath)
        onnx_path = (mpath.parent / manifest.onnx).resolve()
        if not onnx_path.is_relative_to(mpath.parent.resolve()):  # a symlink out of model.dir
            raise ModelError(f"{mpath}: ONNX file {onnx_path} is outside the manifest's folder")
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
        rt = runtime or RuntimeOptions()
        opts, model_path = _session_options(ort, rt, onnx_path, manifest, requested[0])
        if threads:
            opts.intra_op_num_threads = threads
        if not spin:
            # Idle inference threads spin-wait by default: that burns the cores the event loop
            # needs for RTP, VAD and websockets between batches (3x fewer calls held when on).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        with_options = [(p, rt.provider_options(p)) for p in requested]
        try:
            session = ort.InferenceSession(
                str(model_path), sess_options=opts, providers=with_options
            )
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
        on_gpu = short in ("cuda", "tensorrt")
        if rt.buckets is not None:
            det.buckets = Buckets(rt.buckets) if rt.buckets else None
        elif on_gpu:
            det.buckets = Buckets.up_to(32)
        if rt.io_binding if rt.io_binding is not None else on_gpu:
            det.runner = BoundRunner(
                session,
                manifest.input,
                manifest.output,
                len(manifest.labels),
                "cuda" if on_gpu else "cpu",
                rt.device_id,
            )
        if rt.reuse_front_end:
            split = ort.SessionOptions()
            split.log_severity_level = 3
            if threads:
                split.intra_op_num_threads = threads
            if not spin:
                split.add_session_config_entry("session.intra_op.allow_spinning", "0")
            det.reuse = FrontEndReuse.build(det, split)
        if wanted and wanted[0] in available and actual != wanted[0]:  # GPU wheel, no GPU
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
                f"{self.path}: input {m.input!r} is {inp.type} {inp.shape}; the "
                "model contract needs float32 [batch, samples] raw 16 kHz audio"
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
        if self.buckets is None:
            return self._run(feed)
        outs, at = [], 0
        for rows, bucket in self.buckets.split(len(feed)):
            outs.append(self._run(self.buckets.pad(feed[at : at + rows], bucket))[:rows])
            at += rows
        return np.concatenate(outs)

    def _run(self, feed: np.ndarray) -> np.ndarray:
        if self.runner is not None:
            return self.runner.run(feed)
        out = self.session.run([self.manifest.output], {self.manifest.input: feed})[0]
        return np.asarray(out, dtype=np.float32)

    def p_fake(self, logits: np.ndarray) -> np.ndarray:
        idx = self.manifest.fake_indices
        z = np.asarray(logits, dtype=np.float64)
        if self.manifest.activation == "sigmoid":
            probs = 1.0 / (1.0 + np.exp(-z))
            return np.asarray(np.clip(probs[:, idx].max(axis=1), 0.0, 1.0))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        probs = e / e.sum(axis=1, keepdims=True)
        return np.asarray(np.clip(probs[:, idx].sum(axis=1), 0.0, 1.0))

    def score_windows(
        self,
        windows: list[np.ndarray],
        places: Sequence[tuple[str, int] | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(p_fake, logits) for windows of any lengths: one run per distinct prepared length.

        Grouping by length instead of zero-padding to the longest keeps every score independent
        of what else shared the batch, which padding would not for models that normalize per window.
        ``places`` ((stream, speech_end) per window) lets front-end reuse skip audio it has seen.
        """
        n_labels = len(self.manifest.labels)
        logits = np.zeros((len(windows), n_labels), dtype=np.float32)
        todo = list(range(len(windows)))
        if self.reuse is not None and places is not None:
            self.reuse.forget_idle()
            feats, done = [], []
            for i, (w, place) in enumerate(zip(windows, places, strict=True)):
                f = self.reuse.features(place[0], w, place[1]) if place else None
                if f is not None:
                    feats.append(f)
                    done.append(i)
            if done:
                logits[done] = self.reuse.score(feats)
                todo = sorted(set(todo) - set(done))
        prepared = {i: self.prepare(windows[i]) for i in todo}
        by_len: dict[int, list[int]] = {}
        for i, w in prepared.items():
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


def _session_options(
    ort: Any, rt: RuntimeOptions, onnx_path: Path, manifest: Manifest, provider: str
) -> tuple[Any, Path]:
    """Session options and the file to load: the saved optimised graph when it is there and was
    made from this very ONNX file for this provider, else the ONNX file (saving the optimised
    graph for next time when ``optimized_dir`` is set)."""
    if rt.optimize not in OPTIMIZE_LEVELS:
        raise ModelError(
            f"optimize must be one of {', '.join(OPTIMIZE_LEVELS)}, not {rt.optimize!r}"
        )
    levels = ort.GraphOptimizationLevel
    level = {
        "disabled": levels.ORT_DISABLE_ALL,
        "basic": levels.ORT_ENABLE_BASIC,
        "extended": levels.ORT_ENABLE_EXTENDED,
        "all": levels.ORT_ENABLE_ALL,
    }[rt.optimize]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = level
    if rt.optimized_dir is None or rt.optimize == "disabled":
        return opts, onnx_path
    # The key names the source bytes, the provider and the level: a changed model or another
    # provider never loads a stale optimised graph.
    key = (manifest.sha256 or sha256_file(onnx_path))[:16]
    short = SHORT_NAMES.get(provider, provider)
    saved = Path(rt.optimized_dir) / f"{onnx_path.stem}.{key}.{short}.{rt.optimize}.ort.onnx"
    if saved.exists():
        opts.graph_optimization_level = levels.ORT_DISABLE_ALL
        log.info("model %s: loading the optimised graph %s", manifest.name, saved)
        return opts, saved
    try:
        saved.parent.mkdir(parents=True, exist_ok=True)
        opts.optimized_model_filepath = str(saved)
    except OSError as exc:
        log.warning(
            "model %s: cannot save the optimised graph in %s: %s", manifest.name, saved.parent, exc
        )
    return opts, onnx_path
