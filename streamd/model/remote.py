"""Scoring on a Triton inference tier (KServe v2 over gRPC) instead of onnxruntime in-process.

``RemoteDetector`` keeps everything the local ``Detector`` does on this side (fitting windows to
the manifest's lengths, grouping by length, ``p_fake`` from logits), so scores are the same; only
the graph runs remotely. Requests go round-robin over the healthy servers, where Triton's dynamic
batcher merges them with every other daemon's. A server that fails (refused, unavailable, timed
out) is skipped for ``retry_s`` and the request goes to the next; with none left the request waits
and retries, while the scorer's bounded queue (pipeline/remote_scorer.py) holds or drops windows.

tritonclient is imported only when ``model.backend`` is ``triton``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamd.errors import ModelError
from streamd.model.manifest import load_manifest
from streamd.model.session import Detector

if TYPE_CHECKING:
    from streamd.config.sections import TritonConfig

log = logging.getLogger("streamd.model.remote")

WAIT_STEP_S = 0.2
# gRPC codes that say the request itself is wrong: retrying it elsewhere cannot help.
FATAL_CODES = ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "UNIMPLEMENTED")


def _import_client() -> Any:
    try:
        import tritonclient.grpc.aio as grpcclient
    except ImportError:
        raise ModelError(
            "model.backend is triton but tritonclient is not installed: "
            "pip install 'streamd[triton-client]'"
        ) from None
    return grpcclient


@dataclass
class ServerState:
    url: str
    client: Any = None
    down_until: float = 0.0
    last_error: str = ""
    requests: int = 0
    failures: int = 0
    max_batch: int | None = None  # the model's max_batch_size there, read on first use


@dataclass
class RemoteDetector(Detector):
    """A Detector whose graph runs on Triton servers; see the module docstring."""

    servers: list[ServerState] = field(default_factory=list)
    model_name: str = ""
    timeout_s: float = 5.0
    retry_s: float = 2.0
    waiting: int = 0  # requests waiting for any server to come back
    _next: int = 0

    @classmethod
    def from_config(cls, manifest_path: str | Path, cfg: TritonConfig) -> RemoteDetector:
        """Only the manifest is needed here: the ONNX file lives on the inference tier."""
        _import_client()
        mpath = Path(manifest_path)
        manifest = load_manifest(mpath)
        return cls(
            manifest=manifest,
            path=mpath,
            session=None,
            provider="triton",
            servers=[ServerState(url) for url in cfg.servers],
            model_name=cfg.model_name or manifest.name,
            timeout_s=cfg.timeout_s,
            retry_s=cfg.retry_s,
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "backend": "triton", "servers": [s.url for s in self.servers]}

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "model": self.model_name,
            "waiting": self.waiting,
            "servers": {
                s.url: {
                    "up": s.down_until <= now,
                    "requests": s.requests,
                    "failures": s.failures,
                    "last_error": s.last_error,
                }
                for s in self.servers
            },
        }

    def unavailable(self) -> str | None:
        """Why no window can be scored now (every server failed lately), else None."""
        now = time.monotonic()
        if any(s.down_until <= now for s in self.servers):
            return None
        errors = "; ".join(f"{s.url}: {s.last_error}" for s in self.servers)
        return f"inference tier unavailable ({errors})"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raise ModelError("RemoteDetector scores through score_windows_async on the event loop")

    async def score_windows_async(self, windows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Like ``Detector.score_windows``: one request per prepared length, sent together."""
        prepared = [self.prepare(w) for w in windows]
        n_labels = len(self.manifest.labels)
        logits = np.zeros((len(prepared), n_labels), dtype=np.float32)
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(prepared):
            by_len.setdefault(len(w), []).append(i)
        groups = list(by_len.values())
        outs = await asyncio.gather(
            *(self.infer_async(np.stack([prepared[i] for i in idxs])) for idxs in groups)
        )
        for idxs, out in zip(groups, outs, strict=True):
            if out.ndim != 2 or out.shape != (len(idxs), n_labels):
                raise ModelError(
                    f"triton model {self.model_name}: output shape {out.shape}, "
                    f"expected ({len(idxs)}, {n_labels})"
                )
            logits[idxs] = out
        return self.p_fake(logits).astype(np.float32), logits

    def _pick(self) -> ServerState | None:
        now = time.monotonic()
        n = len(self.servers)
        for k in range(n):
            s = self.servers[(self._next + k) % n]
            if s.down_until <= now:
                self._next = (self._next + k + 1) % n
                return s
        return None

    async def infer_async(self, batch: np.ndarray) -> np.ndarray:
        """Logits for one batch of equal-length windows, from whichever server answers."""
        grpcclient = _import_client()
        from tritonclient.utils import InferenceServerException

        m = self.manifest
        waited = False
        while True:
            server = self._pick()
            if server is None:
                if not waited:
                    self.waiting += 1
                    waited = True
                await asyncio.sleep(WAIT_STEP_S)
                continue
            if server.client is None:
                server.client = grpcclient.InferenceServerClient(server.url)
            try:
                if server.max_batch is None:
                    server.max_batch = await self._max_batch(server)
            except InferenceServerException as exc:
                self._mark_down(server, f"{exc.status() or 'error'}: {exc.message()}")
                continue
            except (OSError, asyncio.TimeoutError) as exc:
                self._mark_down(server, f"{type(exc).__name__}: {exc}")
                continue
            if server.max_batch and len(batch) > server.max_batch:
                # Bigger than the server takes in one request: split (the server batches again).
                step = server.max_batch
                parts = await asyncio.gather(
                    *(self.infer_async(batch[i : i + step]) for i in range(0, len(batch), step))
                )
                if waited:
                    self.waiting -= 1
                return np.concatenate(parts)
            inp = grpcclient.InferInput(m.input, list(batch.shape), "FP32")
            inp.set_data_from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            server.requests += 1
            try:
                result = await server.client.infer(
                    self.model_name,
                    [inp],
                    outputs=[grpcclient.InferRequestedOutput(m.output)],
                    client_timeout=self.timeout_s,
                )
            except InferenceServerException as exc:
                status = str(exc.status() or "")
                if any(code in status for code in FATAL_CODES):
                    raise ModelError(f"triton {server.url}: {exc.message()}") from None
                self._mark_down(server, f"{status or 'error'}: {exc.message()}")
                continue
            except (OSError, asyncio.TimeoutError) as exc:
                self._mark_down(server, f"{type(exc).__name__}: {exc}")
                continue
            if waited:
                self.waiting -= 1
            if server.last_error:
                log.info("triton %s answers again", server.url)
                server.last_error = ""
            out = result.as_numpy(m.output)
            if out is None:
                raise ModelError(f"triton {server.url}: no output {m.output!r} in the response")
            return np.asarray(out, dtype=np.float32)

    async def _max_batch(self, server: ServerState) -> int:
        """The model's ``max_batch_size`` on that server (0: no batching dimension)."""
        cfg = await server.client.get_model_config(
            self.model_name, as_json=True, client_timeout=self.timeout_s
        )
        return int(cfg.get("config", {}).get("max_batch_size", 0) or 0)

    def _mark_down(self, server: ServerState, reason: str) -> None:
        server.failures += 1
        server.down_until = time.monotonic() + self.retry_s
        if reason != server.last_error:
            log.warning("triton %s failed (%s): retrying elsewhere", server.url, reason[:300])
        server.last_error = reason[:300]

    async def aclose(self) -> None:
        for s in self.servers:
            if s.client is not None:
                try:
                    await s.client.close()
                except Exception as exc:  # closing a dead channel must not stop shutdown
                    log.debug("triton %s: close failed: %s", s.url, exc)
                s.client = None
