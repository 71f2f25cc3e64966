"""Files rather than calls: score, eval, metrics, datasets and channel simulation."""
