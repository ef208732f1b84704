"""The experiment grid: its plan, per-run configs, and that a rerun skips finished work."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from serengeti_tf import config as cfg
from serengeti_tf.experiment import plan_runs, run_config, run_experiment


def _grid_config(**experiment) -> cfg.Config:
    return cfg.resolve(updates=[{
        "model": {"input_size": 32},
        "train": {"epochs": 1, "batch_size": 16},
        "eval": {"bootstrap_samples": 20, "head_min": 20, "tail_max": 5},
        "experiment": experiment,
    }])


def test_plan_has_baseline_once_and_two_phases_per_sampler(tmp_path):
    runs = plan_runs(_grid_config(samplers=["none", "ros", "rus"], seeds=2), tmp_path)
    assert len(runs) == 2 * (1 + 2 + 2)
    phase2 = [r for r in runs if r.phase == 2]
    assert {r.sampler for r in phase2} == {"ros", "rus"}
    for run in phase2:
        assert run.init_run == run.run_dir.with_name(f"{run.sampler}-phase1")
        assert runs.index(run) > [r.run_dir for r in runs].index(run.init_run)
    assert len({r.run_dir for r in runs}) == len(runs)


def test_run_config_sets_phase_sampler_and_seed(tmp_path):
    config = _grid_config(samplers=["rus"], seeds=2, phase2_epochs=3)
    first, second = [r for r in plan_runs(config, tmp_path) if r.seed == 1]
    c1, c2 = run_config(config, first), run_config(config, second)
    assert (c1.train.phase, c1.sampler.name, c1.train.seed, c1.train.epochs) == (1, "rus", 1, 1)
    # Phase 2 trains on the original distribution, with its own epoch budget.
    assert (c2.train.phase, c2.sampler.name, c2.train.epochs) == (2, "none", 3)


@pytest.mark.slow
def test_experiment_runs_grid_then_rerun_skips_finished_runs(tiny_dataset, tmp_path):
    config = _grid_config(samplers=["none", "rus"], seeds=1)
    out = tmp_path / "exp"
    lines: list[str] = []
    result = run_experiment(config, tiny_dataset, out, print_fn=lines.append)
    runs = pd.read_csv(out / "runs.csv")
    assert list(zip(runs["sampler"], runs["phase"])) == [("none", 1), ("rus", 1), ("rus", 2)]
    assert runs["macro_f1"].between(0, 1).all()
    assert Path(result["markdown"]).is_file()
    assert sum(line.startswith("[") for line in lines) == 3  # one progress line per run

    models = sorted(out.glob("runs/seed0/*/model.keras"))
    stamps = {p: p.stat().st_mtime_ns for p in models}
    rerun_lines: list[str] = []
    run_experiment(config, tiny_dataset, out, print_fn=rerun_lines.append)
    assert {p: p.stat().st_mtime_ns for p in models} == stamps  # nothing retrained
    assert pd.read_csv(out / "runs.csv").equals(runs)
