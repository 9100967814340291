"""A training run: config, the objects built from it, the loop, checkpoints, data, sweeps, reports."""
