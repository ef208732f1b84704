"""`serengeti-tf demo`: the whole job on the built-in synthetic data, end to end, on a CPU.

    OUT/
      data/          synthetic LILA-layout Snapshot Serengeti dataset (demo-data)
      prepared/      class-sharded TFRecords (prepare)
      experiment/    baseline and two-phase runs, evaluations and the comparison report

Each step is resumable, so rerunning `demo` after an interruption continues. The settings are the
ones in `configs/demo.yaml` (small images, few epochs); `--smoke` shrinks them further for CI.
Whatever the numbers show is what the report says: nothing here is tuned to make a method win.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import yaml

from serengeti_tf import config as cfg

# Same content as configs/demo.yaml (a test keeps them equal): the package must run the demo
# without the repository's configs/ folder.
DEMO_SETTINGS = """
data:
  image_size: 72
  shard_size: 512
model:
  input_size: 64
train:
  epochs: 8
  batch_size: 64
  early_stopping_patience: 3
experiment:
  samplers: [none, rus, ros]
  seeds: 1
"""

# CI-sized: a few hundred images, one epoch per phase, tiny inputs.
SMOKE_SETTINGS = {
    "data": {"image_size": 40},
    "model": {"input_size": 32},
    "train": {"epochs": 1, "batch_size": 32},
    "experiment": {"samplers": ["none", "rus"]},
}
DEMO_SCALE = 0.02
SMOKE_SCALE = 0.002


def demo_config(smoke: bool = False, overrides: Sequence[str] = ()) -> cfg.Config:
    updates = [yaml.safe_load(DEMO_SETTINGS)] + ([SMOKE_SETTINGS] if smoke else [])
    return cfg.resolve(overrides=overrides, updates=updates)


def run_demo(out_dir: str | Path, smoke: bool = False, overrides: Sequence[str] = (),
             seed: int = 0, print_fn: Callable[[str], None] = print) -> dict:
    """demo-data -> prepare -> experiment (baseline, RUS and ROS two-phase) -> report."""
    from serengeti_tf.demo_data import write_demo_dataset
    from serengeti_tf.experiment import run_experiment
    from serengeti_tf.prepare import format_summary, prepare_dataset

    out = Path(out_dir)
    config = demo_config(smoke, overrides)
    data_dir, prepared_dir = out / "data", out / "prepared"
    print_fn(f"1/3 synthetic LILA-format data -> {data_dir}")
    if (data_dir / "SnapshotSerengeti_v2_1_images.csv").is_file():
        print_fn("    already written; reusing it")
    else:
        write_demo_dataset(data_dir, scale=SMOKE_SCALE if smoke else DEMO_SCALE, seed=seed)
    config.data.metadata = [str(data_dir / "SnapshotSerengeti_v2_1_images.csv"),
                            str(data_dir / "SnapshotSerengeti_v2_1_annotations.csv")]
    config.data.image_root = str(data_dir)
    config.data.source_format = "lila_csv"
    config = cfg.validate(config)

    print_fn(f"2/3 prepare -> {prepared_dir}")
    summary = prepare_dataset(config, prepared_dir)
    print_fn(format_summary(summary))

    print_fn(f"3/3 experiment ({', '.join(config.experiment.samplers)}) -> {out / 'experiment'}")
    result = run_experiment(config, prepared_dir, out / "experiment", print_fn=print_fn)
    return result
