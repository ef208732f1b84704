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


def test_experiment_on_the_val_split_reports_val_evaluations(tmp_path, monkeypatch):
    """Item 7 of issue 9: `eval.split: val` used to crash in the report, which asked for test
    evaluations. Training and evaluation are replaced by fakes that write what the real ones write."""
    import numpy as np

    from serengeti_tf import evaluation, training
    from serengeti_tf.io_utils import write_csv, write_json

    names = ["antelope", "buffalo", "cheetah"]
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    splits_evaluated = []

    def fake_train(config, dataset_dir, run_dir, init_run=None, **kwargs):
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save_config(config, run_dir)
        write_json(run_dir / "lineage.json", {"phase": config.train.phase, "sampler": config.sampler.name
                                              if config.train.phase == 1 else "rus",
                                              "seed": config.train.seed, "dataset_dir": str(dataset_dir),
                                              "init_run": str(init_run) if init_run else None})

    def fake_evaluate(run_dir, config=None, split=None, dataset_dir=None, **kwargs):
        splits_evaluated.append(split)
        rng = np.random.default_rng(len(splits_evaluated))
        y_pred = np.where(rng.random(len(y_true)) < 0.7, y_true, (y_true + 1) % 3)
        prob = np.eye(3)[y_pred] * 0.8 + 0.2 / 3
        out = Path(run_dir) / evaluation.eval_dir_name(split)
        metrics = evaluation.compute_metrics(y_true, prob, names, {n: 10 for n in names}, config.eval)
        write_json(out / "metrics.json", metrics)
        write_csv(out / "per_class.csv", evaluation.per_class_table(y_true, prob, names, {n: 10 for n in names}))
        paths = [f"img{i}.jpg" for i in range(len(y_true))]
        write_csv(out / "predictions.csv", evaluation.predictions_frame(paths, paths, y_true, prob, names, 2))
        return {"metrics": metrics}

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(evaluation, "evaluate_run", fake_evaluate)
    data = tmp_path / "data"
    data.mkdir()
    (data / "class_map.json").write_text("{}")
    config = _grid_config(samplers=["none", "rus"], seeds=1)
    config.eval.split = "val"
    result = run_experiment(config, data, tmp_path / "exp", print_fn=lambda *_: None)
    assert set(splits_evaluated) == {"val"}
    assert "evaluated on the val split" in Path(result["markdown"]).read_text()
    assert "rus phase 2 vs baseline" in set(result["paired"]["seeds"]["comparison"])
