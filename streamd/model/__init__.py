"""What the daemon needs at run time to use a model: the manifest and an onnxruntime session."""
