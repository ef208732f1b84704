"""reporting.py: `compare` on small fake evaluated runs, the paper's table shape, seeds, F1 change."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serengeti_tf import config as cfg
from serengeti_tf.errors import UserError
from serengeti_tf.evaluate import evaluation as ev
from serengeti_tf.evaluate import reporting as rp
from serengeti_tf.io_utils import write_csv, write_json

NAMES = ["buffalo", "eland", "zebra"]
TRAIN = {"zebra": 900, "buffalo": 300, "eland": 20}
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
PATHS = [f"img{i:02d}.jpg" for i in range(len(Y_TRUE))]
CAPTURES = [f"cap{i // 2}" for i in range(len(Y_TRUE))]  # two frames per capture
PAPER_COLUMNS = ["model", "phase1_accuracy", "phase2_accuracy", "phase1_macro_f1", "phase2_macro_f1",
                 "phase1_macro_precision", "phase2_macro_precision", "phase1_macro_recall",
                 "phase2_macro_recall", "note"]


def fake_run(root: Path, name: str, sampler: str, phase: int, y_pred, seed: int = 0,
             init_run: Path | None = None, evaluated: bool = True) -> Path:
    """A run folder with lineage, config and an eval/ written by the real evaluation functions."""
    run = root / name
    run.mkdir(parents=True)
    config = cfg.Config()
    config.eval.bootstrap_samples = 20
    cfg.save_config(config, run)
    write_json(run / "lineage.json", {"phase": phase, "sampler": sampler, "seed": seed,
                                      "dataset_dir": str(root / "data"),
                                      "init_run": str(init_run) if init_run else None})
    if evaluated:
        prob = np.eye(len(NAMES))[np.asarray(y_pred)] * 0.8 + 0.2 / len(NAMES)
        metrics = ev.compute_metrics(Y_TRUE, prob, NAMES, TRAIN, config.eval)
        write_json(run / "eval" / "metrics.json", metrics)
        write_csv(run / "eval" / "per_class.csv", ev.per_class_table(Y_TRUE, prob, NAMES, TRAIN))
        write_csv(run / "eval" / "predictions.csv",
                  ev.predictions_frame(PATHS, CAPTURES, Y_TRUE, prob, NAMES, top_k=2))
    return run


# Baseline never gets eland right (F1 0); RUS phase 1 finds eland but loses zebra; phase 2 in between.
BASE = [0, 0, 0, 0, 0, 2, 2, 2, 2, 2]
RUS1 = [0, 0, 1, 1, 1, 1, 2, 2, 0, 1]
RUS2 = [0, 0, 0, 1, 1, 0, 2, 2, 2, 2]


def f1_of(pred) -> np.ndarray:
    from sklearn.metrics import f1_score

    return f1_score(Y_TRUE, pred, labels=range(3), average=None, zero_division=0)


def test_compare_two_runs_paper_table_and_plots(tmp_path):
    base = fake_run(tmp_path, "none-phase1", "none", 1, BASE)
    rus1 = fake_run(tmp_path, "rus-phase1", "rus", 1, RUS1)
    rus2 = fake_run(tmp_path, "rus-phase2", "rus", 2, RUS2, init_run=rus1)
    out = tmp_path / "cmp"
    result = rp.compare_runs([rus2, base, rus1], out)

    table = pd.read_csv(out / "macro_results.csv", keep_default_na=False)
    assert list(table.columns) == PAPER_COLUMNS  # the shape of the paper's macro_results.csv
    assert list(table["model"]) == ["baseline", "rus"]
    row = table.set_index("model")
    base_metrics = pd.read_json(base / "eval" / "metrics.json", typ="series")
    # As in the paper: the one-phase baseline sits in the phase2 columns, with a note.
    assert row.loc["baseline", "phase1_accuracy"] == ""
    assert float(row.loc["baseline", "phase2_accuracy"]) == pytest.approx(base_metrics["accuracy"], abs=1e-4)
    assert row.loc["baseline", "note"] == rp.SINGLE_PHASE_NOTE
    assert float(row.loc["rus", "phase1_accuracy"]) == pytest.approx(np.mean(np.array(RUS1) == Y_TRUE))
    assert float(row.loc["rus", "phase2_macro_f1"]) == pytest.approx(f1_of(RUS2).mean(), abs=1e-4)

    markdown = (out / "macro_results.md").read_text()
    assert "### Macro F1" in markdown and "| rus |" in markdown
    report = (out / "report.md").read_text()
    for plot in result["plots"]:
        assert plot.read_bytes()[:4] == b"\x89PNG" and f"]({plot.name})" in report
    assert {p.name for p in result["plots"]} == {"f1_change_rus_phase_2_vs_baseline.png",
                                                 "f1_change_rus_phase_2_vs_phase_1.png"}

    change = pd.read_csv(out / "f1_change.csv")
    vs_base = change[change["comparison"] == "rus phase 2 vs baseline"].set_index("species")
    # Species by train frequency: zebra (900), buffalo (300), eland (20).
    assert list(vs_base.index) == ["zebra", "buffalo", "eland"]
    base_f1, new_f1 = f1_of(BASE), f1_of(RUS2)
    assert vs_base.loc["buffalo", "rel_change"] == pytest.approx((new_f1[0] - base_f1[0]) / base_f1[0], abs=1e-4)
    # The baseline's eland F1 is 0: no relative change, flagged instead.
    assert base_f1[1] == 0 and new_f1[1] > 0
    assert np.isnan(vs_base.loc["eland", "rel_change"]) and vs_base.loc["eland", "ref_zero"]
    per_class = pd.read_csv(out / "per_class_f1.csv")
    assert list(per_class.columns) == ["species", "count_train", "baseline phase 1", "rus phase 1", "rus phase 2"]
    assert len(pd.read_csv(out / "runs.csv")) == 3
    assert "](../rus-phase2/eval/per_class.csv)" in report  # links resolve from the report folder


def test_compare_requires_evaluated_runs(tmp_path):
    base = fake_run(tmp_path, "none-phase1", "none", 1, BASE)
    plain = fake_run(tmp_path, "rus-phase1", "rus", 1, RUS1, evaluated=False)
    with pytest.raises(UserError, match=r"no test evaluation .*serengeti-tf evaluate .*rus-phase1"):
        rp.compare_runs([base, plain], tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()  # nothing written before the inputs are checked
    with pytest.raises(UserError, match="run folder not found"):
        rp.compare_runs([tmp_path / "nope"], tmp_path / "cmp")


def test_compare_refuses_foreign_output_and_duplicate_runs(tmp_path):
    base = fake_run(tmp_path, "a", "none", 1, BASE)
    again = fake_run(tmp_path, "b", "none", 1, RUS1)
    with pytest.raises(UserError, match="several runs of model 'baseline' phase 1 seed 0"):
        rp.compare_runs([base, again], tmp_path / "cmp")
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        rp.compare_runs([base], out)
    rp.compare_runs([base], tmp_path / "ok")
    rp.compare_runs([base], tmp_path / "ok")  # same runs: rewritten, not refused
    rus = fake_run(tmp_path, "rus", "rus", 1, RUS1)
    with pytest.raises(UserError, match="different output"):
        rp.compare_runs([base, rus], tmp_path / "ok")
    assert len(rp.compare_runs([base, rus], tmp_path / "ok", overwrite=True)["runs"]) == 2


def test_aggregate_over_seeds_mean_and_std():
    rows = [{"sampler": "ros", "phase": 2, "seed": s, "accuracy": a, "macro_f1": f}
            for s, a, f in [(0, 0.80, 0.40), (1, 0.84, 0.44), (2, 0.82, 0.39)]]
    rows.append({"sampler": "none", "phase": 1, "seed": 0, "accuracy": 0.85, "macro_f1": 0.39})
    agg = rp.aggregate_over_seeds(rows, metrics=("accuracy", "macro_f1")).set_index("model")
    assert list(agg.index) == ["baseline", "ros"]  # paper order
    assert agg.loc["ros", "n_seeds"] == 3 and agg.loc["ros", "seeds"] == "0 1 2"
    assert agg.loc["ros", "accuracy_mean"] == pytest.approx(0.82)
    assert agg.loc["ros", "accuracy_std"] == pytest.approx(0.02)  # sample std, ddof=1
    assert agg.loc["ros", "macro_f1_std"] == pytest.approx(np.std([0.40, 0.44, 0.39], ddof=1))
    assert np.isnan(agg.loc["baseline", "accuracy_std"])  # one seed: no spread


def test_experiment_report_over_seeds_shows_mean_and_std(tmp_path):
    runs = []
    for seed in (0, 1):
        runs.append(fake_run(tmp_path, f"s{seed}/none-phase1", "none", 1, BASE, seed=seed))
        p1 = fake_run(tmp_path, f"s{seed}/ros-phase1", "ros", 1, RUS1 if seed else BASE, seed=seed)
        runs.append(p1)
        runs.append(fake_run(tmp_path, f"s{seed}/ros-phase2", "ros", 2, RUS2, seed=seed, init_run=p1))
    result = rp.experiment_report(pd.DataFrame({"run_dir": [str(r) for r in runs]}), tmp_path / "report")
    table = result["table"].set_index("model")
    assert table.loc["ros", "n_seeds"] == 2
    acc = [np.mean(np.array(BASE) == Y_TRUE), np.mean(np.array(RUS1) == Y_TRUE)]
    assert table.loc["ros", "phase1_accuracy"] == pytest.approx(np.mean(acc), abs=1e-4)
    assert table.loc["ros", "phase1_accuracy_std"] == pytest.approx(np.std(acc, ddof=1), abs=1e-4)
    assert table.loc["ros", "phase2_accuracy_std"] == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "±" in markdown and "mean ± sample std over seeds" in markdown
    assert len(result["plots"]) == 2


def test_f1_change_handles_zero_reference():
    change = rp.f1_change(pd.Series([0.5, 0.0, 0.0, 0.4]), pd.Series([0.75, 0.0, 0.3, 0.2]))
    assert change["rel_change"].iloc[0] == pytest.approx(0.5)
    assert change["rel_change"].iloc[1] == 0 and not change["ref_zero"].iloc[1]
    assert np.isnan(change["rel_change"].iloc[2]) and change["ref_zero"].iloc[2]
    assert change["rel_change"].iloc[3] == pytest.approx(-0.5)


def test_model_labels_keep_loss_variants_apart():
    train = cfg.TrainConfig()
    assert rp.model_label("none", train) == "baseline" and rp.model_label("ros_rus_5k") == "ros_rus_5k"
    train.loss = "focal"
    train.class_weighting = "inverse"
    assert rp.model_label("none", train) == "baseline+focal+inverse_weights"


def test_compare_cli(tmp_path, capsys):
    from serengeti_tf_cli.main import main

    base = fake_run(tmp_path, "none-phase1", "none", 1, BASE)
    rus1 = fake_run(tmp_path, "rus-phase1", "rus", 1, RUS1)
    rus2 = fake_run(tmp_path, "rus-phase2", "rus", 2, RUS2, init_run=rus1)
    main(["compare", str(base), str(rus1), str(rus2), "-o", str(tmp_path / "cmp"), "--head-min", "300",
          "--tail-max", "100"])
    out = capsys.readouterr().out
    assert "### Macro F1" in out and "report.md" in out
    assert (tmp_path / "cmp" / "config.yaml").is_file()
    groups = json.loads((tmp_path / "cmp" / "verdict.json").read_text())["groups"]
    assert (groups["head_min"], groups["tail_max"]) == (300, 100) and groups["rule"].startswith("given")
    # The report's group table uses the same groups: eland (20 train images) alone is tail.
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "given: head >= 300, tail < 100" in report
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(base), "-o", str(tmp_path / "cmp")])  # other runs: refused
    assert exit_info.value.code == 2 and "different output" in capsys.readouterr().err


def test_compare_reports_paired_differences_against_baseline_and_own_phase1(tmp_path):
    base = fake_run(tmp_path, "none-phase1", "none", 1, BASE)
    rus1 = fake_run(tmp_path, "rus-phase1", "rus", 1, RUS1)
    rus2 = fake_run(tmp_path, "rus-phase2", "rus", 2, RUS2, init_run=rus1)
    out = tmp_path / "cmp"
    rp.compare_runs([base, rus1, rus2], out)
    seeds = pd.read_csv(out / "paired_differences.csv", keep_default_na=False).set_index("comparison")
    assert set(seeds.index) == {"rus phase 1 vs baseline", "rus phase 2 vs baseline", "rus phase 2 vs its phase 1"}
    row = seeds.loc["rus phase 2 vs baseline"]
    assert row["delta_accuracy"] == pytest.approx(np.mean(np.array(RUS2) == Y_TRUE) - np.mean(np.array(BASE) == Y_TRUE))
    assert row["delta_macro_f1"] == pytest.approx(f1_of(RUS2).mean() - f1_of(BASE).mean(), abs=1e-6)
    assert row["delta_macro_f1_ci_low"] <= row["delta_macro_f1"] <= row["delta_macro_f1_ci_high"]
    own = seeds.loc["rus phase 2 vs its phase 1"]
    assert Path(own["ref_run"]) == rus1 and own["delta_macro_f1"] == pytest.approx(
        f1_of(RUS2).mean() - f1_of(RUS1).mean(), abs=1e-6)
    per_class = pd.read_csv(out / "paired_per_class.csv", keep_default_na=False)
    eland = per_class[(per_class["comparison"] == "rus phase 2 vs baseline") & (per_class["species"] == "eland")]
    assert eland["delta_f1"].iloc[0] == pytest.approx(f1_of(RUS2)[1] - f1_of(BASE)[1], abs=1e-6)
    assert set(per_class["outside_noise"]) <= {True, False}
    report = (out / "report.md").read_text()
    assert "## Paired differences" in report and "In words:" in report
    # One seed: test-set noise only, so no verdict about the method (issue 18).
    assert "**rus phase 2 vs baseline** (1 seed): seed-to-seed noise is not covered, so no verdict" in report
    assert "within test-set noise" in report or "distinguishable from test-set noise" in report
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["n_seeds"] == 1 and verdict["seed_aware"] is False
    assert {m["verdict"] for c in verdict["comparisons"] for m in c["metrics"].values()} == {"no verdict"}


def test_paired_summary_over_seeds_is_a_seed_aware_t_interval(tmp_path):
    """Three seeds: the summary's Δ macro F1 is the paired mean over seeds, its interval a t-interval
    over seeds (never narrower than t_2 · std / sqrt(3)), and the sentence's verdict follows it. The
    old report said "better in k of n seeds" instead (issue 18)."""
    from scipy.stats import t as student_t

    runs = []
    for seed, pred in ((0, RUS2), (1, RUS1), (2, BASE)):
        runs.append(fake_run(tmp_path, f"s{seed}/none-phase1", "none", 1, BASE, seed=seed))
        runs.append(fake_run(tmp_path, f"s{seed}/rus-phase1", "rus", 1, pred, seed=seed))
    result = rp.experiment_report(pd.DataFrame({"run_dir": [str(r) for r in runs]}), tmp_path / "report",
                                  eval_config=cfg.EvalConfig(bootstrap_samples=50))
    summary = result["paired"]["summary"].set_index("comparison").loc["rus phase 1 vs baseline"]
    deltas = [f1_of(p).mean() - f1_of(BASE).mean() for p in (RUS2, RUS1, BASE)]
    assert summary["n_seeds"] == 3 and summary["seed_aware"]
    assert summary["macro_f1_delta"] == pytest.approx(np.mean(deltas))
    half = (summary["macro_f1_high"] - summary["macro_f1_low"]) / 2
    assert half >= student_t.ppf(0.975, 2) * np.std(deltas, ddof=1) / np.sqrt(3) - 1e-9
    assert summary["macro_f1_verdict"] == "no difference shown"  # signs disagree over seeds
    # Seed 2 is the baseline's own predictions: no difference at all.
    seed2 = result["paired"]["seeds"].set_index("seed").loc[2]
    assert seed2["delta_macro_f1"] == 0 and seed2["delta_macro_f1_ci_low"] == 0 == seed2["delta_macro_f1_ci_high"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "**rus phase 1 vs baseline** (3 seeds; 95% interval over seeds" in report
    assert "of 3 seeds" not in report
    assert "better" not in summary["sentence"] and "worse" not in summary["sentence"]
    verdict = json.loads((tmp_path / "report" / "verdict.json").read_text())
    (comparison,) = verdict["comparisons"]
    assert verdict["seed_aware"] and comparison["n_seeds"] == 3
    assert comparison["metrics"]["macro_f1"]["low"] == pytest.approx(summary["macro_f1_low"])


def test_paired_differences_refuse_runs_on_different_images(tmp_path):
    base = fake_run(tmp_path, "none-phase1", "none", 1, BASE)
    rus = fake_run(tmp_path, "rus-phase1", "rus", 1, RUS1)
    predictions = pd.read_csv(rus / "eval" / "predictions.csv")
    write_csv(rus / "eval" / "predictions.csv", predictions.iloc[:-1])
    with pytest.raises(UserError, match="not evaluated on the same images"):
        rp.compare_runs([base, rus], tmp_path / "cmp")
    assert not (tmp_path / "cmp" / "report.md").exists()  # refused before any report file
