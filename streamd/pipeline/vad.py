"""Speech gating with webrtcvad, per stream, with a hangover so word endings are kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamd.pipeline.audio import SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class Frame:
    """One VAD frame in stream time. ``speech`` includes the hangover; ``voiced`` is the raw VAD."""

    start: int  # first sample index in stream time at 16 kHz
    samples: np.ndarray
    speech: bool
    voiced: bool

    @property
    def end(self) -> int:
        return self.start + len(self.samples)


class SpeechGate:
    """Cuts 16 kHz float audio into VAD frames; keeps the partial frame between calls."""

    def __init__(self, aggressiveness: int = 2, frame_ms: int = 20, hangover_ms: int = 200) -> None:
        import webrtcvad

        if frame_ms not in (10, 20, 30):
            raise ValueError("webrtcvad takes 10, 20 or 30 ms frames")
        self._vad = webrtcvad.Vad(int(aggressiveness))
        self.frame_len = SAMPLE_RATE * frame_ms // 1000
        self._hangover_frames = -(-hangover_ms // frame_ms)
        self._pending = np.zeros(0, dtype=np.float32)
        self._position = 0  # stream samples already framed
        self._hang = 0
        self.speech_samples = 0

    @property
    def position(self) -> int:
        return self._position

    def push(self, audio: np.ndarray) -> list[Frame]:
        buf = np.concatenate([self._pending, audio]) if self._pending.size else audio
        n_frames = len(buf) // self.frame_len
        used = n_frames * self.frame_len
        frames: list[Frame] = []
        if n_frames:
            blocks = buf[:used].reshape(n_frames, self.frame_len)
            pcm = (np.clip(blocks, -1.0, 32767 / 32768) * 32768.0).astype("<i2")
            for i in range(n_frames):
                voiced = self._vad.is_speech(pcm[i].tobytes(), SAMPLE_RATE)
                if voiced:
                    self._hang = self._hangover_frames
                    speech = True
                elif self._hang > 0:
                    self._hang -= 1
                    speech = True
                else:
                    speech = False
                if speech:
                    self.speech_samples += self.frame_len
                frames.append(Frame(self._position, blocks[i], speech, voiced))
                self._position += self.frame_len
        self._pending = np.array(buf[used:], dtype=np.float32)
        return frames

    def flush(self) -> list[Frame]:
        """End of stream: pad the last partial frame with zeros so no speech is dropped."""
        if not self._pending.size:
            return []
        pad = self.frame_len - len(self._pending)
        return self.push(np.zeros(pad, dtype=np.float32))
