"""Training loops for the learned models (V, M): streaming data, checkpoints, resume."""
