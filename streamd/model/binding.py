"""Fixed batch shapes and IO binding: what keeps a GPU busy instead of re-planning every call.

``Buckets`` rounds a batch up to one of a few sizes (zero rows pad it) so cuDNN searches its
convolution algorithms once per bucket, not once per batch size, and TensorRT builds one engine
profile per bucket. Rows of a batch are independent in an inference graph (no batch statistics),
so padding never moves a score; tests check that on every provider they can run.

``BoundRunner`` runs a session through IO binding with one preallocated input and output
buffer per shape on the session's device: the host copy goes straight into a buffer that already
lives there, and nothing is allocated per call. The same code runs on the CPU provider, which is
how it is tested where there is no GPU.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Buckets:
    def __init__(self, sizes: Sequence[int]) -> None:
        sizes = sorted({int(s) for s in sizes})
        if not sizes or sizes[0] < 1:
            raise ValueError("batch buckets must be positive sizes")
        self.sizes = tuple(sizes)

    @classmethod
    def up_to(cls, batch_max: int) -> Buckets:
        """Powers of two up to ``batch_max`` (and ``batch_max`` itself)."""
        return cls([s for s in DEFAULT_BUCKETS if s < batch_max] + [batch_max])

    def split(self, n: int) -> list[tuple[int, int]]:
        """(rows, bucket) per run for a batch of ``n``: full largest buckets, then the smallest
        bucket that holds the rest."""
        top = self.sizes[-1]
        out = [(top, top)] * (n // top)
        rest = n % top
        if rest:
            out.append((rest, next(s for s in self.sizes if s >= rest)))
        return out

    def pad(self, batch: np.ndarray, bucket: int) -> np.ndarray:
        if len(batch) == bucket:
            return batch
        padded = np.zeros((bucket, *batch.shape[1:]), dtype=batch.dtype)
        padded[: len(batch)] = batch
        return padded


class BoundRunner:
    """``session.run`` through IO binding, buffers preallocated per (shape) on the device.

    Buffers are per thread (the scorer may run several batches at once) and at most
    ``max_shapes`` shapes are kept per thread, least recently used dropped first.
    """

    def __init__(
        self,
        session: Any,
        input_name: str,
        output_name: str,
        n_outputs: int,
        device: str = "cpu",
        device_id: int = 0,
        max_shapes: int = 16,
    ) -> None:
        import onnxruntime as ort

        self._ort = ort
        self.session = session
        self.input_name = input_name
        self.output_name = output_name
        self.n_outputs = n_outputs
        self.device = device
        self.device_id = device_id
        self.max_shapes = max_shapes
        in_type = next(i.type for i in session.get_inputs() if i.name == input_name)
        out_type = next(o.type for o in session.get_outputs() if o.name == output_name)
        self.in_dtype = np.float16 if "float16" in in_type else np.float32
        self.out_dtype = np.float16 if "float16" in out_type else np.float32
        self._local = threading.local()

    def _buffers(self, shape: tuple[int, ...]) -> tuple[Any, Any, Any]:
        cache: OrderedDict[tuple[int, ...], tuple[Any, Any, Any]] | None = getattr(
            self._local, "cache", None
        )
        if cache is None:
            cache = self._local.cache = OrderedDict()
        hit = cache.get(shape)
        if hit is not None:
            cache.move_to_end(shape)
            return hit
        new = self._ort.OrtValue.ortvalue_from_shape_and_type
        x = new(list(shape), self.in_dtype, self.device, self.device_id)
        y = new([shape[0], self.n_outputs], self.out_dtype, self.device, self.device_id)
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_name, x)
        binding.bind_ortvalue_output(self.output_name, y)
        cache[shape] = (binding, x, y)
        while len(cache) > self.max_shapes:
            cache.popitem(last=False)
        return binding, x, y

    @property
    def shapes(self) -> int:
        """Shapes with buffers in this thread (for tests and the benchmark)."""
        return len(getattr(self._local, "cache", ()))

    def run(self, batch: np.ndarray) -> np.ndarray:
        binding, x, y = self._buffers(tuple(batch.shape))
        x.update_inplace(np.ascontiguousarray(batch, dtype=self.in_dtype))
        self.session.run_with_iobinding(binding)
        return np.array(y.numpy(), dtype=np.float32, copy=True)
