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

# CI-sized: a few hundred images, one epoch per run, tiny inputs.
SMOKE_SETTINGS = {
    "data": {"image_size": 40},
    "model": {"input_size": 32},
    "train": {"epochs": 1, "batch_size": 32},
    "experiment": {"samplers": ["none", "rus"]},
}
SMOKE_SCALE = 0.003
# Three captures per class at least, so every class reaches train, val and test (as in the paper,
# where every class has test images) and per-class scores exist for the rarest classes too.
DEMO_MIN_CAPTURES = 3


def demo_settings_file():
    """configs/demo.yaml, installed with the package as `serengeti_tf_configs`."""
    from importlib import resources

    return resources.files("serengeti_tf_configs") / "demo.yaml"


def demo_config(smoke: bool = False, overrides: Sequence[str] = ()) -> cfg.Config:
    """configs/demo.yaml, then the smoke sizes (if asked), then `--set` overrides."""
    updates = [yaml.safe_load(demo_settings_file().read_text(encoding="utf-8"))]
    updates += [SMOKE_SETTINGS] if smoke else []
    updates += [cfg.nested(*cfg.parse_override(text)) for text in overrides]
    return cfg.resolve(updates=updates)


def run_demo(out_dir: str | Path, smoke: bool = False, overrides: Sequence[str] = (),
             seed: int = 0, print_fn: Callable[[str], None] = print) -> dict:
    """demo-data -> prepare -> experiment (baseline, RUS and ROS two-phase) -> report."""
    from serengeti_tf.demo_data import write_demo_dataset
    from serengeti_tf.experiment import run_experiment
    from serengeti_tf.prepare import format_summary, prepare_dataset

    from serengeti_tf.locks import output_lock

    out = Path(out_dir)
    config = demo_config(smoke, overrides)
    data_dir, prepared_dir = out / "data", out / "prepared"
    with output_lock(out):  # one process per demo folder
        print_fn(f"1/3 synthetic LILA-format data -> {data_dir}")
        if (data_dir / "SnapshotSerengeti_v2_1_images.csv").is_file():
            print_fn("    already written; reusing it")
        else:
            write_demo_dataset(data_dir, seed=seed, min_captures_per_class=DEMO_MIN_CAPTURES,
                               **({"scale": SMOKE_SCALE} if smoke else {}))
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
