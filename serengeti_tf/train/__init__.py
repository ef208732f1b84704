"""Training: phase 1 / phase 2 runs, run folders, callbacks, strategies, losses, optimizers, head re-balancing."""
