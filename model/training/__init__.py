"""Training Kinema's own small Wan-format model on procedural clips (`python -m model.training.train`)."""
