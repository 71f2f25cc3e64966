"""The per-stream audio path: VAD, windows, the shared scorer, smoothing, and the stream hub."""
