"""Issue 6 wiring: the method registry, head re-balancing inside `train`, custom-loss reloads,
and the experiment grid over methods (tiny generated dataset, 32 px, 1 epoch, CPU)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import Printed, quiet, tiny_config, weights_of

from serengeti_tf import config as cfg
from serengeti_tf.choices import IMBALANCE_METHODS
from serengeti_tf.data import dataset as ds_reader
from serengeti_tf.errors import UserError
from serengeti_tf.evaluate import methods
from serengeti_tf.evaluate.experiment import plan_runs, run_config, run_experiment
from serengeti_tf.models import resnet as M
from serengeti_tf.train import runs, training


def method_config(**train) -> cfg.Config:
    """The shared tiny config at 1 epoch with a short cRT head retraining, validated."""
    return cfg.validate(tiny_config(**{"epochs": 1, "crt_epochs": 2, "crt_steps_per_epoch": 3, **train}))


# ---------------------------------------------------------------------------------------------
# Registry and validation
# ---------------------------------------------------------------------------------------------

def test_every_method_is_a_valid_train_config():
    assert {"cw_inverse", "cw_effective", "focal", "focal_cw", "balanced_softmax", "logit_adjusted",
            "posthoc_la", "tau_norm", "crt"} <= set(IMBALANCE_METHODS.names())
    for name in IMBALANCE_METHODS.names():
        overrides = methods.method_overrides(name)
        assert overrides and set(overrides) <= {"loss", "class_weighting", "head_rebalancing"}
        cfg.validate(method_config(**overrides))
        assert IMBALANCE_METHODS.lookup(name).description


def test_head_methods_are_the_ones_that_only_rebalance_the_head():
    assert {name for name in IMBALANCE_METHODS.names() if methods.head_only(name)} == {"posthoc_la", "tau_norm", "crt"}


def test_head_methods_get_a_baseline_to_branch_from_even_without_sampler_none(tmp_path):
    config = cfg.resolve(updates=[{"experiment": {"samplers": ["rus"], "methods": ["tau_norm"]}}])
    planned = plan_runs(config, tmp_path)
    assert [(r.sampler, r.phase, r.method) for r in planned] == [
        ("none", 1, None), ("rus", 1, None), ("rus", 2, None), ("none", 1, "tau_norm")]
    assert planned[-1].trained_run == planned[0].run_dir


def test_unknown_or_repeated_method_is_a_user_error_listing_the_known_ones():
    with pytest.raises(UserError,
                       match=r"experiment.methods must be .*from cw_inverse, .*crt, got \['focal', 'smote'\]"):
        cfg.resolve(updates=[{"experiment": {"methods": ["focal", "smote"]}}])
    with pytest.raises(UserError, match="distinct"):
        cfg.resolve(updates=[{"experiment": {"methods": ["focal", "focal"]}}])
    assert cfg.Config().experiment.methods == []


def test_plan_adds_one_single_phase_run_per_method_and_seed(tmp_path):
    config = cfg.resolve(updates=[{"experiment": {"samplers": ["none", "ros"], "seeds": 2,
                                                  "methods": ["focal_cw", "crt"]}}])
    planned = plan_runs(config, tmp_path)
    method_runs = [r for r in planned if r.method]
    assert [(r.seed, r.method) for r in method_runs] == [(0, "focal_cw"), (0, "crt"), (1, "focal_cw"), (1, "crt")]
    assert all(r.phase == 1 and r.sampler == "none" and r.init_run is None for r in method_runs)
    assert method_runs[0].run_dir == tmp_path / "runs" / "seed0" / "focal_cw"
    # A loss method trains; a head re-balancing method branches from its seed's baseline run.
    assert method_runs[0].trained_run is None
    assert method_runs[3].trained_run == tmp_path / "runs" / "seed1" / "none-phase1"
    assert method_runs[3].trained_run in [r.run_dir for r in planned[:planned.index(method_runs[3])]]
    # The paper's sampler runs are unchanged.
    assert ([(r.sampler, r.phase) for r in planned if not r.method and r.seed == 0]
            == [("none", 1), ("ros", 1), ("ros", 2)])
    focal_cw = run_config(config, method_runs[2])
    assert ((focal_cw.train.loss, focal_cw.train.class_weighting, focal_cw.train.seed)
            == ("focal", "effective_number", 1))
    assert (focal_cw.sampler.name, focal_cw.train.phase) == ("none", 1)
    assert run_config(config, method_runs[1]).train.head_rebalancing == "crt"
    assert config.train.loss == "cross_entropy"  # the experiment's own config is untouched


# ---------------------------------------------------------------------------------------------
# Head re-balancing inside `train`
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("method", ["posthoc_logit_adjustment", "tau_norm", "crt"])
def test_train_rebalances_only_the_head_and_a_rerun_does_nothing(method, tiny_dataset, tmp_path):
    run = tmp_path / method
    lines = Printed()
    # One non-zero tau each, so the head must change (a sweep may rightly keep tau = 0 on tiny data).
    config = method_config(head_rebalancing=method, posthoc_taus=[1.0], tau_norm_taus=[1.0])
    training.train(config, tiny_dataset, run, on_event=lines)
    summary = pd.read_json(run / "rebalancing.json", typ="series")
    assert summary["method"] == method
    assert any(line.startswith(f"head re-balancing {method}") for line in lines)
    assert summary["train_counts"] == [int(n) for n in ds_reader.train_counts(tiny_dataset).values()]
    if method == "crt":
        assert summary["tau"] is None and not (run / "rebalancing_sweep.csv").exists()
    else:
        sweep = pd.read_csv(run / "rebalancing_sweep.csv")
        assert summary["tau"] in set(sweep["tau"])
        assert list(sweep.columns[:2]) == ["tau", "macro_f1"]

    state = runs.read_state(runs.RunPaths(run))
    trained = weights_of(M.load_model(run / "checkpoints" / state.best_checkpoint))
    final_model = M.load_model(run / "model.keras")
    final = weights_of(final_model)
    head = {w.path for w in M.head_layer(final_model).weights}
    assert set(final) == set(trained) and head
    for path, value in final.items():
        if path not in head:
            assert np.array_equal(value, trained[path]), f"{method} changed non-head weight {path}"
    assert any(not np.array_equal(final[p], trained[p]) for p in head), f"{method} left the head unchanged"

    stamp = (run / "model.keras").stat().st_mtime_ns
    again = Printed()
    training.train(config, tiny_dataset, run, on_event=again)
    assert "already holds this finished run" in again[0]
    assert (run / "model.keras").stat().st_mtime_ns == stamp


def test_posthoc_adjustment_after_a_sampler_run_removes_the_plan_prior(tiny_dataset, tmp_path):
    """A phase-1 ROS head learnt the plan's targets: post-hoc adjustment must subtract their log prior,
    not the original counts' (which would over-correct towards the classes ROS already boosted)."""
    from serengeti_tf.data import sampling
    from serengeti_tf.train.losses import log_priors

    config = method_config(head_rebalancing="posthoc_logit_adjustment", posthoc_taus=[1.0])
    config.sampler.name, config.sampler.ros_thresholds, config.sampler.ros_cap = "ros", [2, 6, 13, 40], 40
    run = tmp_path / "ros"
    training.train(config, tiny_dataset, run, on_event=quiet)
    counts = ds_reader.train_counts(tiny_dataset)
    targets = [int(n) for n in sampling.sampling_plan(counts, config.sampler)["target"]]
    assert targets != list(counts.values())  # ROS changed the distribution
    summary = pd.read_json(run / "rebalancing.json", typ="series")
    assert summary["prior_counts"] == targets and summary["prior"].startswith("phase-1 plan targets")
    state = runs.read_state(runs.RunPaths(run))
    before = M.head_layer(M.load_model(run / "checkpoints" / state.best_checkpoint)).get_weights()[1]
    after = M.head_layer(M.load_model(run / "model.keras")).get_weights()[1]
    np.testing.assert_allclose(after - before, -log_priors(targets), rtol=1e-5, atol=1e-5)
    # The baseline and phase 2 head learnt the original distribution.
    assert training.head_prior_counts(method_config(), tiny_dataset)[0] == list(counts.values())
    assert training.head_prior_counts(method_config(phase=2), tiny_dataset)[0] == list(counts.values())


def test_prior_left_by_a_prior_aware_loss():
    """Issue 18 item 6: what each loss leaves of the prior, which post-hoc adjustment may remove."""
    from serengeti_tf.train.losses import class_weights, normalise_priors
    from serengeti_tf.train.rebalancing import prior_left_by_loss

    counts = [500, 100, 20, 0]
    prior = normalise_priors(counts)

    def left(**train) -> np.ndarray:
        return prior_left_by_loss(counts, method_config(**train).train)

    np.testing.assert_allclose(left(), prior)  # plain cross-entropy: the whole prior
    np.testing.assert_allclose(left(loss="focal"), prior)
    np.testing.assert_allclose(left(loss="balanced_softmax"), np.full(4, 0.25))  # nothing left
    np.testing.assert_allclose(left(class_weighting="inverse")[:3], np.full(3, left(class_weighting="inverse")[0]))
    half = np.sqrt(prior) / np.sqrt(prior).sum()
    np.testing.assert_allclose(left(loss="logit_adjusted", logit_adjust_tau=0.5), half)
    weights = class_weights(counts, "effective_number", 0.99)[:3]
    effective = left(class_weighting="effective_number", effective_number_beta=0.99)
    np.testing.assert_allclose(effective[:3] / effective[0], prior[:3] * weights / (prior[0] * weights[0]), rtol=1e-5)


def test_posthoc_adjustment_after_balanced_softmax_does_not_remove_the_prior_twice(phase1_run, tiny_dataset,
                                                                                   tmp_path):
    """A balanced-softmax run's logits are already free of the prior: post-hoc adjustment at tau 1 used
    to subtract log prior once more (bias changed by -log prior). Now the prior left is uniform, the
    bias moves by one constant for every class and no prediction changes. The trained run is a copy
    of the session run whose config.yaml says balanced_softmax: what is checked is which prior the
    re-balancing subtracts, read from the trained run's own config (as `experiment` branches)."""
    trained, branch = tmp_path / "bsm", tmp_path / "posthoc"
    shutil.copytree(phase1_run, trained)
    trained_config = cfg.load_saved(trained / "config.yaml")
    trained_config.train.loss = "balanced_softmax"
    cfg.save_config(trained_config, trained)
    config = method_config(head_rebalancing="posthoc_logit_adjustment", posthoc_taus=[1.0])
    training.rebalance_run(config, tiny_dataset, branch, trained, on_event=quiet)
    summary = runs.read_run_json(branch, "rebalancing.json")
    classes = len(summary["prior_counts"])
    np.testing.assert_allclose(summary["prior_left"], np.full(classes, 1 / classes))
    assert "balanced_softmax" in summary["prior_left_source"]
    assert summary["val_after"] == summary["val_before"]
    before = M.head_layer(M.load_model(trained / "model.keras")).get_weights()[1]
    after = M.head_layer(M.load_model(branch / "model.keras")).get_weights()[1]
    shift = after - before
    np.testing.assert_allclose(shift, np.full_like(shift, shift[0]), atol=1e-5)


@pytest.mark.slow
def test_rebalancing_interrupted_after_training_finishes_on_rerun(tiny_dataset, tmp_path, monkeypatch):
    run = tmp_path / "killed"
    config = method_config(head_rebalancing="tau_norm")

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # as if the process died right after training finished

    with monkeypatch.context() as patch:
        patch.setattr(training, "_rebalance", killed)
        with pytest.raises(KeyboardInterrupt):
            training.train(config, tiny_dataset, run, on_event=quiet)
    assert runs.read_state(runs.RunPaths(run)).finished and not (run / "rebalancing.json").exists()
    lines = Printed()
    training.train(config, tiny_dataset, run, on_event=lines)
    assert "re-balancing the head (tau_norm)" in lines[0]
    assert (run / "rebalancing.json").is_file()
    assert sum("head re-balancing tau_norm" in line for line in lines) == 1


@pytest.mark.slow
def test_phase2_crt_reuses_the_cached_phase2_features(phase1_run, tiny_dataset, tmp_path):
    run = tmp_path / "p2"
    training.train(method_config(phase=2, head_rebalancing="crt"), tiny_dataset, run, init_run=phase1_run,
                   on_event=quiet)
    summary = pd.read_json(run / "rebalancing.json", typ="series")
    assert summary["features_cached"] == ["features-train.npz", "features-val.npz"]
    assert not list((run / "checkpoints").glob("rebalance-features-*"))


@pytest.mark.slow
def test_a_focal_loss_run_reloads_compiled_in_a_fresh_process(tiny_dataset, tmp_path):
    run = tmp_path / "focal"
    training.train(method_config(loss="focal", class_weighting="effective_number"), tiny_dataset, run,
                   on_event=quiet)
    state = runs.read_state(runs.RunPaths(run))
    code = ("import sys; from serengeti_tf.models.resnet import load_model; "
            "m = load_model(sys.argv[1], compile=True); print(type(m.loss).__name__)")
    out = subprocess.run([sys.executable, "-c", code, str(run / "checkpoints" / state.checkpoint)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "FocalLoss"


# ---------------------------------------------------------------------------------------------
# The experiment grid over methods
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_experiment_with_methods_reports_them_and_a_rerun_skips_finished_runs(tiny_dataset, tmp_path):
    config = cfg.resolve(updates=[{
        "model": {"input_size": 32},
        "train": {"epochs": 1, "batch_size": 16, "steps_per_epoch": 2, "crt_epochs": 1},
        "eval": {"bootstrap_samples": 20, "head_min": 20, "tail_max": 5},
        "experiment": {"samplers": ["none"], "seeds": 1, "methods": ["focal", "crt"]},
    }])
    out = tmp_path / "exp"
    result = run_experiment(config, tiny_dataset, out, on_event=quiet)
    table = pd.read_csv(out / "runs.csv")
    assert list(table["method"]) == ["-", "focal", "crt"]
    assert list(table["model"]) == ["baseline", "baseline+focal", "baseline+crt"]
    assert (out / "runs" / "seed0" / "crt" / "rebalancing.json").is_file()
    report = (out / "report" / "report.md").read_text()
    assert "baseline+focal" in report and "baseline+crt" in report
    assert "(f1_vs_frequency.png)" in report and Path(result["frequency_plot"]).stat().st_size > 1000
    per_class = pd.read_csv(out / "report" / "per_class_f1.csv")
    assert {"baseline phase 1", "baseline+focal phase 1", "baseline+crt phase 1"} <= set(per_class.columns)

    models = sorted(out.glob("runs/seed0/*/model.keras"))
    stamps = {p: p.stat().st_mtime_ns for p in models}
    run_experiment(config, tiny_dataset, out, on_event=quiet)
    assert {p: p.stat().st_mtime_ns for p in models} == stamps
    assert pd.read_csv(out / "runs.csv").equals(table)


@pytest.mark.slow
def test_experiment_head_methods_branch_from_the_baseline_without_training_it_again(tiny_dataset, tmp_path,
                                                                                  monkeypatch):
    phase1_trainings: list[str] = []
    real_phase1 = training._phase1

    def counting_phase1(config, *args, **kwargs):
        phase1_trainings.append(config.sampler.name)
        return real_phase1(config, *args, **kwargs)

    monkeypatch.setattr(training, "_phase1", counting_phase1)
    config = cfg.resolve(updates=[{
        "model": {"input_size": 32},
        "train": {"epochs": 1, "batch_size": 16, "steps_per_epoch": 2, "crt_epochs": 1,
                  "posthoc_taus": [1.0], "tau_norm_taus": [1.0]},
        "eval": {"bootstrap_samples": 20, "head_min": 20, "tail_max": 5},
        "experiment": {"samplers": ["none"], "seeds": 1, "methods": ["posthoc_la", "tau_norm", "crt"]},
    }])
    out = tmp_path / "exp"
    run_experiment(config, tiny_dataset, out, on_event=quiet)
    assert phase1_trainings == ["none"]  # one training: the baseline; the three methods reuse it
    table = pd.read_csv(out / "runs.csv")
    assert list(table["method"]) == ["-", "posthoc_la", "tau_norm", "crt"]
    seed_dir = out / "runs" / "seed0"
    baseline = weights_of(M.load_model(seed_dir / "none-phase1" / "model.keras"))
    for method in ("posthoc_la", "tau_norm", "crt"):
        run = seed_dir / method
        lineage = runs.read_run_json(run, "lineage.json")
        assert lineage["rebalanced_run"] == str(seed_dir / "none-phase1")
        assert lineage["trained_epochs"] == 0 and lineage["sampler"] == "none"
        final_model = M.load_model(run / "model.keras")
        head = {w.path for w in M.head_layer(final_model).weights}
        final = weights_of(final_model)
        # Paired: the very same backbone as the baseline, only the head differs.
        assert all(np.array_equal(v, baseline[p]) for p, v in final.items() if p not in head)
        assert any(not np.array_equal(final[p], baseline[p]) for p in head), method
    stamps = {p: p.stat().st_mtime_ns for p in sorted(out.glob("runs/seed0/*/model.keras"))}
    run_experiment(config, tiny_dataset, out, on_event=quiet)
    assert phase1_trainings == ["none"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.slow
def test_a_branched_run_refuses_a_baseline_retrained_since(phase1_run, tiny_dataset, tmp_path):
    base, branch = tmp_path / "base", tmp_path / "crt"
    shutil.copytree(phase1_run, base)  # retrained in place below
    config = method_config(head_rebalancing="posthoc_logit_adjustment", posthoc_taus=[1.0])
    training.rebalance_run(config, tiny_dataset, branch, base, on_event=quiet)
    assert (branch / "rebalancing.json").is_file() and not (branch / "checkpoints" / "state.json").exists()
    training.train(method_config(), tiny_dataset, base, overwrite=True, on_event=quiet)
    with pytest.raises(UserError, match="changed since"):
        training.rebalance_run(config, tiny_dataset, branch, base, on_event=quiet)


def test_cli_train_and_experiment_have_the_issue6_options(tiny_dataset, tmp_path):
    from click.testing import CliRunner

    from serengeti_tf_cli.experiment import experiment
    from serengeti_tf_cli.train import train_command

    result = CliRunner().invoke(train_command, ["--data", str(tiny_dataset), "--run-dir", str(tmp_path / "r"),
                                                "--loss", "nope"])
    assert result.exit_code == 2 and "nope" in result.output
    assert not (tmp_path / "r").exists()
    help_text = CliRunner().invoke(train_command, ["--help"]).output
    for flag in ("--loss", "--class-weighting", "--focal-gamma", "--head-rebalancing"):
        assert flag in help_text
    assert "--methods" in CliRunner().invoke(experiment, ["--help"]).output
