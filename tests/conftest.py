"""Shared fixtures: the real sample data beside the repository (skipped when absent), a tiny generated
dataset and a phase-1 run trained on it once per session, the plain-CSV image source of the prepare
tests, quiet TF. Plain helper functions shared by the
test files (tiny configs, shard hashes, the interrupt hook...) are in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# The reader fuzz tests explore new random inputs on every local run (that is how they find bugs);
# under CI (CI=true) they replay a fixed set, so a green commit stays green.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

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


@pytest.fixture(scope="module")
def csv_source(tmp_path_factory) -> tuple[Path, Path]:
    """(image root, labels.csv) of `helpers.make_csv_source`, made once per test module. Read-only:
    a test that changes the source makes its own."""
    from helpers import make_csv_source

    root = tmp_path_factory.mktemp("source")
    return root, make_csv_source(root)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small generated prepared dataset: 4 imbalanced classes (one with a single image)."""
    from serengeti_tf.testing import write_tiny_dataset

    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "prepared",
                              {"antelope": 30, "buffalo": 12, "cheetah": 5, "dikdik": 1})


@pytest.fixture(scope="session")
def phase1_run(tiny_dataset, tmp_path_factory) -> Path:
    """A finished phase-1 run of `helpers.tiny_config()` on tiny_dataset, trained once for the session.
    Read-only: a test that modifies or retrains it works on a `shutil.copytree` copy."""
    from helpers import quiet, tiny_config

    from serengeti_tf.train import training

    run = tmp_path_factory.mktemp("runs") / "p1"
    assert training.train(tiny_config(), tiny_dataset, run, on_event=quiet) == run
    return run
