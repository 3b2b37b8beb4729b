"""Training: the loop over phases and stages, models, numerics, evaluation and background
checkpoints; the one place that owns epochs."""
