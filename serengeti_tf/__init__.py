"""serengeti-tf: two-phase training of camera-trap species classifiers on imbalanced data."""

__version__ = "0.1.0"
