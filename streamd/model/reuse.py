"""Front-end reuse: with a 1 s hop, 3/4 of every 4 s window was already seen a second ago.

AASIST's sinc front end and first two encoder blocks are convolutions and poolings along time
(stride 27 samples in all), and they hold about 3/4 of its compute. The ONNX graph is split
there (``onnx.utils.Extractor``): the front half runs once per hop on the new audio only, its
feature frames are kept per stream, and the back half scores each window from the cached
frames. Interior frames are bit-identical to a whole-window run; only the first and last frame
of a window differ (a whole-window run pads them with zeros, the cache has real neighbours), and
the window starts up to 26 samples (1.6 ms) earlier to stay on the frame grid. docs/capacity.md
reports how far scores move.

Streams are identified by the key the scorer is given, in windower speech-sample coordinates
(``Window.speech_end``), so VAD pauses cut nothing. Windows that are not full length, and
families without a known cut point, go through the whole graph as before.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from streamd.model.session import Detector

log = logging.getLogger("streamd.model")

STRIDE = 27  # samples per feature frame: max-pool 3 after the sinc conv, then 3 per block
MARGIN = 3  # frames at a chunk's edges that its zero padding touches (1 measured)
CUT_NODE = "encoder.1/encoder.1.0/MaxPool"  # end of the second encoder block
SINC_NODE = "conv_time/Conv"
IDLE_S = 30.0  # a stream's frames are dropped after this long without a window


@dataclass
class _Frames:
    anchor: int  # speech-sample index of frame 0
    first: int  # frame index of feats[..., 0]
    feats: np.ndarray  # [C, H, n] frames first .. first+n
    final: int  # frames before this are exact; later ones were cut by a chunk edge
    used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def end(self) -> int:
        return int(self.first + self.feats.shape[-1])


class FrontEndReuse:
    def __init__(self, front: Any, back: Any, front_in: str, cut: str, window: int) -> None:
        self.front, self.back = front, back
        self.front_in, self.cut = front_in, cut
        self.window = window  # samples in a full window (the manifest's max)
        self.frames = back.get_inputs()[0].shape[-1]  # frames in a full window
        self._streams: dict[str, _Frames] = {}
        self._lock = threading.Lock()
        self.reused = 0
        self.full = 0

    @classmethod
    def build(cls, det: Detector, options: Any) -> FrontEndReuse | None:
        """Split ``det``'s graph; None (with a log line) when the model has no known cut."""
        import onnx
        from onnx.utils import Extractor

        if getattr(det, "front_end", None) is not None:
            log.info("model %s: front-end reuse needs raw audio in; off", det.name)
            return None
        model = onnx.load(str(det.path))
        nodes = {n.name: n for n in model.graph.node}
        sinc = next((n for name, n in nodes.items() if name.endswith(SINC_NODE)), None)
        cut_node = next((n for name, n in nodes.items() if name.endswith(CUT_NODE)), None)
        producers = {o: n for n in model.graph.node for o in n.output}
        if sinc is None or cut_node is None or sinc.input[0] not in producers:
            log.warning(
                "model %s: no AASIST sinc front end and encoder cut in the graph; reuse off",
                det.name,
            )
            return None
        front_in = producers[sinc.input[0]].input[0]  # the audio before its unsqueeze
        cut = cut_node.output[0]
        ext = Extractor(onnx.shape_inference.infer_shapes(model))
        front = ext.extract_model([front_in], [cut])
        back = ext.extract_model([cut], [det.manifest.output])
        del front.graph.value_info[:]
        for v in (*front.graph.input, *front.graph.output):
            for i, d in enumerate(v.type.tensor_type.shape.dim):
                d.ClearField("dim_value")
                d.dim_param = f"d{i}"
        ort = _ort()

        def session(m: Any) -> Any:
            return ort.InferenceSession(
                m.SerializeToString(), sess_options=options, providers=det.session.get_providers()
            )

        reuse = cls(session(front), session(back), front_in, cut, det.manifest.max_samples)
        probe = np.zeros((1, reuse.window), np.float32)
        got = reuse._front(probe).shape[-1]
        if got != reuse.frames:
            log.warning(
                "model %s: front end gives %d frames, back takes %d; reuse off",
                det.name,
                got,
                reuse.frames,
            )
            return None
        log.info("model %s: front-end reuse on (%d frames per window)", det.name, reuse.frames)
        return reuse

    def _front(self, audio: np.ndarray) -> np.ndarray:
        return np.asarray(self.front.run([self.cut], {self.front_in: audio})[0])

    def features(self, key: str, samples: np.ndarray, speech_end: int) -> np.ndarray | None:
        """The window's feature frames ``[C, H, frames]``, computing only what is new since the
        stream's last window; None when this window cannot use the cache (not full length)."""
        if len(samples) != self.window:
            return None
        start = speech_end - self.window
        with self._lock:
            st = self._streams.get(key)
        if st is not None:
            with st.lock:
                feats = self._extend(st, samples, start)
            if feats is not None:
                self.reused += 1
                return feats
        # first window, a gap longer than the cache, or out of order: begin again here
        feats = np.asarray(self._front(samples[None])[0])
        st = _Frames(anchor=start, first=0, feats=feats, final=feats.shape[-1] - MARGIN)
        with self._lock:
            self._streams[key] = st
        self.full += 1
        return feats

    def _extend(self, st: _Frames, samples: np.ndarray, start: int) -> np.ndarray | None:
        w0 = (start - st.anchor) // STRIDE  # window start on the frame grid (<= start)
        c = st.final - MARGIN  # re-run from a little before the first inexact frame
        offset = st.anchor + STRIDE * c - start  # where that is in this window's samples
        if w0 < st.first or offset < 0 or len(samples) - offset < STRIDE * (3 * MARGIN) + 160:
            return None
        chunk = self._front(np.ascontiguousarray(samples[None, offset:]))[0]
        keep = st.feats[..., w0 - st.first : st.final - st.first]
        st.feats = np.concatenate([keep, chunk[..., MARGIN:]], axis=-1)
        st.first = w0
        st.final = st.end - MARGIN
        st.used = time.monotonic()
        if st.end < w0 + self.frames:
            return None
        return np.asarray(st.feats[..., : self.frames])

    def score(self, feats: list[np.ndarray]) -> np.ndarray:
        """Logits for windows given as feature frames."""
        out = self.back.run(None, {self.cut: np.stack(feats)})[0]
        return np.asarray(out, dtype=np.float32)

    def forget_idle(self, idle_s: float = IDLE_S) -> None:
        now = time.monotonic()
        with self._lock:
            for key in [k for k, st in self._streams.items() if now - st.used > idle_s]:
                del self._streams[key]

    @property
    def streams(self) -> int:
        return len(self._streams)


def _ort() -> Any:
    import onnxruntime as ort

    return ort
