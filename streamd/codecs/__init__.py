"""Audio codecs a call carries (G.711, L16, G.722, Opus): bytes to samples, nothing else."""
