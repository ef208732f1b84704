"""The experiment grid: its plan, per-run configs, and that a rerun skips finished work."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers import Printed

from serengeti_tf import config as cfg
from serengeti_tf.train import runs as run_files
from serengeti_tf.train import training
from serengeti_tf.train.progress import FORWARD_COST, GridProgress, RunWork, run_work
from serengeti_tf.train.recipes import plan_runs, run_config
from serengeti_tf.workflows.experiment import run_experiment


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
    lines = Printed()
    result = run_experiment(config, tiny_dataset, out, on_event=lines)
    runs = pd.read_csv(out / "runs.csv")
    assert list(zip(runs["sampler"], runs["phase"])) == [("none", 1), ("rus", 1), ("rus", 2)]
    assert runs["macro_f1"].between(0, 1).all()
    assert Path(result["markdown"]).is_file()
    assert sum(line.startswith("[") and "macro F1" in line for line in lines) == 3  # one result line per run
    epoch_lines = [line for line in lines if line.lstrip().startswith("epoch ")]
    assert len(epoch_lines) == 3 and all("grid ETA" in line and "s/img" in line for line in epoch_lines)

    models = sorted(out.glob("runs/seed0/*/model.keras"))
    stamps = {p: p.stat().st_mtime_ns for p in models}
    rerun_lines = Printed()
    run_experiment(config, tiny_dataset, out, on_event=rerun_lines)
    assert {p: p.stat().st_mtime_ns for p in models} == stamps  # nothing retrained
    assert pd.read_csv(out / "runs.csv").equals(runs)


def test_experiment_on_the_val_split_reports_val_evaluations(tiny_dataset, tmp_path, monkeypatch):
    """Item 7 of issue 9: `eval.split: val` used to crash in the report, which asked for test
    evaluations. Training and evaluation are replaced by fakes that write what the real ones write."""
    import numpy as np

    from serengeti_tf.evaluate import evaluation, run_evaluation
    from serengeti_tf.evaluate.run_reader import eval_dir_name
    from serengeti_tf.io_utils import write_csv, write_json
    from serengeti_tf.train import training

    names = ["antelope", "buffalo", "cheetah", "dikdik"]
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
        y_pred = np.where(rng.random(len(y_true)) < 0.7, y_true, (y_true + 1) % 4)
        prob = np.eye(4)[y_pred] * 0.8 + 0.2 / 4
        out = Path(run_dir) / eval_dir_name(split)
        metrics = evaluation.compute_metrics(y_true, prob, names, {n: 10 for n in names}, config.eval)
        write_json(out / "metrics.json", metrics)
        write_csv(out / "per_class.csv", evaluation.per_class_table(y_true, prob, names, {n: 10 for n in names}))
        paths = [f"img{i}.jpg" for i in range(len(y_true))]
        write_csv(out / "predictions.csv", evaluation.predictions_frame(paths, paths, y_true, prob, names, 2))
        return run_evaluation.EvaluationResult(out, metrics, pd.read_csv(out / "per_class.csv"), skipped=False)

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(run_evaluation, "evaluate_run", fake_evaluate)
    data = tiny_dataset  # read for class names and counts only: training is faked
    config = _grid_config(samplers=["none", "rus"], seeds=1)
    config.eval.split = "val"
    result = run_experiment(config, data, tmp_path / "exp", on_event=lambda *_: None)
    assert set(splits_evaluated) == {"val"}
    assert "evaluated on the val split" in Path(result["markdown"]).read_text()
    assert "rus phase 2 vs baseline" in set(result["paired"]["seeds"]["comparison"])


def test_run_fingerprint_ignores_the_grid_around_the_run(tmp_path):
    small = _grid_config(samplers=["none"], seeds=1)
    grown = _grid_config(samplers=["none", "ros", "rus"], seeds=3, methods=["crt"])
    grown.eval.bootstrap_samples = 50
    assert run_files.fingerprint(small, tmp_path, None) == run_files.fingerprint(grown, tmp_path, None)
    other = _grid_config(samplers=["none"])
    other.train.learning_rate = 0.01
    assert run_files.fingerprint(small, tmp_path, None) != run_files.fingerprint(other, tmp_path, None)


def test_a_run_fingerprinted_with_its_grid_by_an_older_version_is_still_recognised(tmp_path):
    from serengeti_tf.io_utils import write_json

    config = _grid_config(samplers=["none"])
    run = tmp_path / "run"
    old = run_files.fingerprint(config, tmp_path, None)
    old["config"]["experiment"] = cfg.to_dict(config)["experiment"]
    old["config"]["eval"] = cfg.to_dict(config)["eval"]
    write_json(run / "fingerprint.json", old)
    assert run_files.claim_run_dir(run, print, config, tmp_path, None, overwrite=False) is True
    # A run that differs in what it trained is still refused.
    other = _grid_config(samplers=["none"])
    other.train.epochs = 5
    with pytest.raises(Exception, match="differs in: config"):
        run_files.claim_run_dir(run, print, other, tmp_path, None, overwrite=False)


def test_run_work_counts_image_passes(tmp_path):
    config = _grid_config(samplers=["rus"])
    counts = {"train": 100, "val": 20, "test": 30}
    phase1, phase2 = (run_config(config, r) for r in plan_runs(config, tmp_path))
    work = run_work(phase1, counts, epoch_images=60)
    assert (work.epochs, work.train_images, work.val_images) == (1, 60, 20)
    assert work.units() == pytest.approx(60 + FORWARD_COST * 20 + FORWARD_COST * 30)
    # Phase 2's fast path and a head re-balancing branch: one forward pass over train + val, plus test.
    assert run_work(phase2, counts, 60).units() == pytest.approx(FORWARD_COST * 150)
    assert run_work(phase1, counts, 60, branches_from_trained=True).units() == pytest.approx(FORWARD_COST * 150)
    # k augmented feature views: k passes over each train image.
    phase2.train.feature_views = 3
    assert run_work(phase2, counts, 60).units() == pytest.approx(FORWARD_COST * (3 * 100 + 20 + 30))


def test_grid_eta_uses_measured_time_per_image_not_runs_done():
    now = [0.0]
    grid = GridProgress([RunWork(4, 100, 0, 0), RunWork(4, 300, 0, 0)], clock=lambda: now[0])
    assert "?" in grid.describe()
    grid.start(0)
    now[0] = 10.0
    grid.epoch(0, 1)  # 100 images in 10 s: 0.1 s per image
    # Left: 3 epochs of run 0 (300 images) + run 1 (1200 images) = 1500 images -> 150 s.
    assert grid.eta_seconds() == pytest.approx(150.0)
    now[0] = 40.0
    grid.finish(0, epochs_run=2)  # early stop after 2 epochs: 200 images in 40 s -> 0.2 s per image
    assert grid.eta_seconds() == pytest.approx(1200 * 0.2)
    grid.skip(1)
    assert grid.eta_seconds() == 0.0


@pytest.mark.slow
def test_growing_a_finished_grid_by_one_sampler_trains_only_the_new_runs(tiny_dataset, tmp_path, monkeypatch):
    trained: list[tuple[int, str]] = []
    real_train = training.train

    def counting_train(config, dataset_dir, run_dir, *args, **kwargs):
        before = run_files.read_state(run_files.RunPaths(run_dir)).finished
        out = real_train(config, dataset_dir, run_dir, *args, **kwargs)
        if not before:
            trained.append((config.train.phase, config.sampler.name))
        return out

    monkeypatch.setattr(training, "train", counting_train)
    out = tmp_path / "exp"
    run_experiment(_grid_config(samplers=["none"]), tiny_dataset, out, on_event=lambda _: None)
    assert trained == [(1, "none")]
    baseline_model = out / "runs" / "seed0" / "none-phase1" / "model.keras"
    stamp = baseline_model.stat().st_mtime_ns

    trained.clear()
    lines = Printed()
    result = run_experiment(_grid_config(samplers=["none", "rus"]), tiny_dataset, out, on_event=lines)
    assert trained == [(1, "rus"), (2, "none")]  # rus phase 1, then its phase 2 (original distribution)
    assert baseline_model.stat().st_mtime_ns == stamp
    assert any("seed 0 none phase 1" in line and "finished earlier" in line for line in lines)
    assert list(result["runs"]["sampler"]) == ["none", "rus", "rus"]


def _fake_grid(monkeypatch, tail_recall_of_rus: float) -> None:
    """Training and evaluation replaced by fakes that write what the real ones write. Each run's
    "network" is right on a test capture with a per-species recall of logit(0.75) + N(0, 0.5) drawn
    from its own seed (seed-to-seed noise); rus runs get `tail_recall_of_rus` on the rarest species."""
    import zlib

    import numpy as np

    from serengeti_tf.evaluate import evaluation, run_evaluation
    from serengeti_tf.evaluate.run_reader import eval_dir_name, read_lineage
    from serengeti_tf.io_utils import write_csv, write_json

    names = ["antelope", "buffalo", "cheetah", "dikdik"]
    train = {"antelope": 30, "buffalo": 12, "cheetah": 5, "dikdik": 1}
    y_true = np.repeat(np.arange(4), [80, 40, 30, 30])

    def fake_train(config, dataset_dir, run_dir, init_run=None, **kwargs):
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save_config(config, run_dir)
        sampler = read_lineage(Path(init_run))["sampler"] if init_run else config.sampler.name
        write_json(run_dir / "lineage.json", {"phase": config.train.phase, "sampler": sampler,
                                              "seed": config.train.seed, "dataset_dir": str(dataset_dir),
                                              "init_run": str(init_run) if init_run else None})

    def fake_evaluate(run_dir, config=None, split=None, dataset_dir=None, **kwargs):
        run_dir = Path(run_dir)
        rng = np.random.default_rng(zlib.crc32(f"{run_dir.parent.name}/{run_dir.name}".encode()))
        recall = 1 / (1 + np.exp(-(np.log(3) + rng.normal(0, 0.5, 4))))
        if read_lineage(run_dir)["sampler"] == "rus":
            recall[3] = tail_recall_of_rus
        wrong = (y_true + rng.integers(1, 4, len(y_true))) % 4
        y_pred = np.where(rng.random(len(y_true)) < recall[y_true], y_true, wrong)
        prob = np.eye(4)[y_pred] * 0.8 + 0.05
        out = run_dir / eval_dir_name(split)
        metrics = evaluation.compute_metrics(y_true, prob, names, train, config.eval)
        write_json(out / "metrics.json", metrics)
        write_csv(out / "per_class.csv", evaluation.per_class_table(y_true, prob, names, train))
        paths = [f"img{i}.jpg" for i in range(len(y_true))]
        write_csv(out / "predictions.csv", evaluation.predictions_frame(paths, paths, y_true, prob, names, 2))
        return run_evaluation.EvaluationResult(out, metrics, pd.read_csv(out / "per_class.csv"), skipped=False)

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(run_evaluation, "evaluate_run", fake_evaluate)


@pytest.fixture
def twin_method():
    """`aa_twin`: the baseline under another name (focal loss with gamma 0 IS cross-entropy)."""
    from serengeti_tf.choices import IMBALANCE_METHODS
    from serengeti_tf.train.methods import _register

    _register("aa_twin", "the baseline again (A/A control)", loss="focal", focal_gamma=0.0)
    yield "aa_twin"
    IMBALANCE_METHODS.unregister("aa_twin")


def test_experiment_three_seeds_a_a_method_gets_no_verdict_and_sentences_follow_intervals(
        tiny_dataset, tmp_path, monkeypatch, twin_method):
    """Issue 18's end-to-end A/A: a method identical to the baseline, 3 seeds, in one `experiment`.
    Its networks differ from the baseline's only by seed noise and test draws, so the report may give
    no "better"/"worse" for it (the seeded draws are fixed; under the null each metric has a 5% false
    alarm rate). Every method and sampler gets the seed-aware Δ macro F1 and Δ tail macro F1 with an
    interval, and each verdict is the one its interval implies."""
    import json

    _fake_grid(monkeypatch, tail_recall_of_rus=0.98)
    config = _grid_config(samplers=["none", "rus"], seeds=3, methods=[twin_method])
    result = run_experiment(config, tiny_dataset, tmp_path / "exp", on_event=lambda *_: None)
    verdict = json.loads((tmp_path / "exp" / "report" / "verdict.json").read_text())
    assert verdict["n_seeds"] == 3 and verdict["seed_aware"] is True
    assert verdict["groups"]["rule"].startswith("given")  # the grid config sets head_min / tail_max
    by_name = {c["comparison"]: c for c in verdict["comparisons"]}
    assert set(by_name) == {"rus phase 1 vs baseline", "rus phase 2 vs baseline", "rus phase 2 vs its phase 1",
                            "baseline+focal phase 1 vs baseline"}
    for comparison in by_name.values():
        assert comparison["n_seeds"] == 3 and comparison["seed_aware"] is True
        assert set(comparison["metrics"]) == {"accuracy", "macro_f1", "tail_macro_f1"}
        for metric in comparison["metrics"].values():
            assert set(metric) == {"delta", "low", "high", "verdict"}
            assert metric["low"] <= metric["delta"] <= metric["high"]
            implied = ("better" if metric["low"] > 0 else "worse" if metric["high"] < 0 else "no difference shown")
            assert metric["verdict"] == implied
            assert f"{metric['delta']:+.4f} [{metric['low']:+.4f}, {metric['high']:+.4f}] → {implied}" \
                in comparison["sentence"]
    twin = by_name["baseline+focal phase 1 vs baseline"]
    assert {m["verdict"] for m in twin["metrics"].values()} == {"no difference shown"}
    assert "better" not in twin["sentence"] and "worse" not in twin["sentence"]
    summary = result["paired"]["summary"].set_index("comparison")
    assert summary.loc["baseline+focal phase 1 vs baseline", "tail_macro_f1_low"] < 0
