"""Helpers shared by the test files (plain functions; the fixtures built on them live in conftest.py).

Imported by test files as `from helpers import ...` (pytest puts tests/ on the path, as for conftest).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from serengeti_tf import config as cfg
from serengeti_tf.errors import UserError

NUM_CLASSES = 4  # the tiny_dataset fixture
# The plain-CSV image source of the prepare tests (`make_csv_source`): species -> number of 2-frame captures.
CSV_CAPTURES = {"zebra": 8, "wildebeest": 5, "aardvark": 3}
TRUNCATED = "zebra/zebra_c0_f1.jpg"  # the source's truncated image


def tiny_config(phase: int = 1, epochs: int = 2, **train) -> cfg.Config:
    """A config that trains in seconds on the tiny dataset: 32 px, batch 8, 2 steps an epoch;
    keyword arguments set `train.*` fields."""
    config = cfg.Config()
    config.model.input_size = 32
    config.train.phase = phase
    config.train.epochs = epochs
    config.train.batch_size = 8
    config.train.steps_per_epoch = 2
    config.eval.batch_size = 16
    config.sampler.shuffle_buffer = 64
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def make_csv_source(root: Path, captures: dict[str, int] = CSV_CAPTURES) -> Path:
    """Small JPEGs + labels.csv (path, label, capture, site), with a human, a blank and a truncated file;
    returns the labels.csv path."""
    rng = np.random.default_rng(0)
    rows = []
    for name, count in captures.items():
        for c in range(count):
            for frame in (1, 2):
                path = f"{name}/{name}_c{c}_f{frame}.jpg"
                (root / name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (36, 48, 3), np.uint8)).save(root / path, quality=90)
                rows.append(dict(path=path, label=name, capture=f"{name}-{c}", site=f"site{c % 2}"))
    for label in ("human", "blank"):
        (root / "other").mkdir(exist_ok=True)
        path = f"other/{label}.jpg"
        Image.fromarray(rng.integers(0, 255, (36, 48, 3), np.uint8)).save(root / path)
        rows.append(dict(path=path, label=label, capture=f"{label}-0", site="site0"))
    data = (root / TRUNCATED).read_bytes()
    (root / TRUNCATED).write_bytes(data[: len(data) // 2])
    metadata = root / "labels.csv"
    pd.DataFrame(rows).to_csv(metadata, index=False)
    return metadata


def prepare_config(root: Path | str, labels: Path | str, **data) -> cfg.Config:
    """The config preparing a `make_csv_source` source (24 px, shards of 2, one worker); keyword
    arguments set `data.*` fields."""
    settings = {"metadata": [str(labels)], "image_root": str(root), "image_size": 24, "shard_size": 2,
                "workers": 1, **data}
    return cfg.resolve(updates=[{"data": settings}])


def prepare_locally(root: Path, labels: Path, out: Path) -> Path:
    """`out` prepared from a `make_csv_source` source by the local runner with `prepare_config`."""
    from serengeti_tf.data.prepare import prepare_dataset

    prepare_dataset(prepare_config(root, labels), out, progress=False)
    return out


def quiet(_event) -> None:
    """An `on_event` sink that drops the progress events."""


def weights_of(model) -> dict[str, np.ndarray]:
    """Every weight of a Keras model as a numpy array, keyed by its path."""
    import keras

    return {w.path: np.array(keras.ops.convert_to_numpy(w)) for w in model.weights}


def subprocess_env(**extra) -> dict:
    """The environment for a child serengeti-tf process: quiet TensorFlow, CPU only, unbuffered output."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def train_cli(*args: str) -> list[str]:
    """The command line of `serengeti-tf train ARGS` in a child process."""
    return [sys.executable, "-m", "serengeti_tf_cli.main", "train", *args]


def run_together(commands: list[list[str]], timeout: float = 600, **kwargs) -> list[subprocess.CompletedProcess]:
    """Runs child processes at the same time and returns their results in order, as `subprocess.run`
    with capture_output and text would: independent children each spend seconds starting TensorFlow,
    so running them together keeps a test's wall time down."""
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
                 for command in commands]
    try:
        outputs = [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    return [subprocess.CompletedProcess(p.args, p.returncode, out, err)
            for p, (out, err) in zip(processes, outputs)]


def invoke_cli(args: list) -> object:
    """Runs `serengeti-tf ARGS` in-process through Click's test runner (exit code and output as the
    console script)."""
    from click.testing import CliRunner

    from serengeti_tf_cli.main import _register, cli

    _register()
    return CliRunner().invoke(cli, [str(a) for a in args])


def shard_bytes(folder: Path) -> dict[str, str]:
    """The sha256 of every shard file of a prepared dataset folder, by file name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob("camera_traps-*.tfrecord-*"))}


def tree_hashes(folder: Path) -> dict[str, str]:
    """The sha256 of every file below `folder`, by relative path (to show a tree was not modified)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class InterruptAfter:
    """An `after_shard` hook that records each finished shard file in `done` and raises
    KeyboardInterrupt (as Ctrl-C would) once `count` shards are done."""

    def __init__(self, count: int):
        self.count = count
        self.done: list[str] = []

    def __call__(self, spec) -> None:
        self.done.append(spec.file)
        if len(self.done) == self.count:
            raise KeyboardInterrupt


class Printed(list):
    """An `on_event` sink that keeps each event's terminal line (as the CLI prints it)."""

    def __call__(self, event) -> None:
        from serengeti_tf import events
        from serengeti_tf_cli.progress import event_line

        if not isinstance(event, events.Progress):  # drawn as a bar on stderr, not a line
            self.append(event_line(event))


@contextlib.contextmanager
def raises_as_cli(match: str, command=None):
    """`pytest.raises(UserError, match=...)` on the message as the CLI shows it: the settings the
    library names (`errors.setting`) shown as flags (those of click `command`, if given)."""
    from serengeti_tf_cli.flags import error_text

    with pytest.raises(UserError) as info:
        yield info
    text = error_text(info.value, command)
    assert re.search(match, text), f"{match!r} does not match {text!r}"
