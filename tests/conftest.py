"""Shared fixtures: the real sample data beside the repository (skipped when absent), quiet TF."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SERENGETI_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (read-only real camera-trap samples); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small generated prepared dataset: 4 imbalanced classes (one with a single image)."""
    from serengeti_tf.testing import write_tiny_dataset

    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "prepared",
                              {"antelope": 30, "buffalo": 12, "cheetah": 5, "dikdik": 1})
