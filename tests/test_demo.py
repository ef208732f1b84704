"""`serengeti-tf demo` end to end at smoke size, through the installed console script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import raises_as_cli, run_together

from serengeti_tf.demo.runner import demo_config
from serengeti_tf.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_demo_settings_are_configs_demo_yaml():
    from serengeti_tf import config as cfg

    assert demo_config() == cfg.resolve([REPO_ROOT / "configs" / "demo.yaml"])
    assert demo_config(smoke=True).model.input_size < demo_config().model.input_size


def test_demo_overrides_win_over_smoke_settings():
    assert demo_config(smoke=True, overrides=["train.epochs=2"]).train.epochs == 2


def _command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("serengeti-tf")
    return ([str(script)] if script.exists() else [sys.executable, "-m", "serengeti_tf_cli.main"]) + list(args)


def _serengeti(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(*args), capture_output=True, text=True, timeout=1200)


def test_help_lists_every_verb():
    result = _serengeti("--help")
    assert result.returncode == 0, result.stderr
    for verb in ("demo-data", "prepare", "plan", "train", "evaluate", "compare", "experiment",
                 "predict", "demo"):
        assert f"  {verb} " in result.stdout


@pytest.mark.slow
def test_demo_smoke_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = _serengeti("demo", "--smoke", "-o", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "report:" in result.stdout
    # Per-epoch progress with the grid-wide ETA, and no TensorFlow start-up notes or CUDA errors.
    assert sum("epoch 1/1" in line and "grid ETA" in line for line in result.stdout.splitlines()) == 3
    for noise in ("E0000", "I0000", "cuInit", "absl::InitializeLog"):
        assert noise not in result.stdout + result.stderr, noise
    # Nothing from TensorFlow's Python logger at WARNING or above (e.g. phase 2's tf.function retracing
    # warnings), in either logging format (plain `WARNING:tensorflow:` or absl's `W1203 ... file.py:12]`).
    python_logger = re.compile(r"^((WARNING|ERROR|CRITICAL|FATAL):(tensorflow|absl|keras)"
                               r"|[WEF]\d{4} [\d:.]+ +\d+ \S+\.py:\d+\])", re.M)
    assert not python_logger.search(result.stdout + result.stderr), python_logger.findall(result.stderr)
    assert "retracing" not in result.stdout + result.stderr
    # The verdict comes last (one line saying so when the report wrote no verdict.json), then the report.
    lines = result.stdout.strip().splitlines()
    verdict_at = next(i for i, line in enumerate(lines) if line.startswith("verdict: "))
    assert lines[-1].startswith("report: ") and verdict_at < len(lines) - 1
    assert all(line.startswith(("verdict: ", "in words: ")) for line in lines[verdict_at:-1])
    # The data is the smoke long tail, split as designed: every species in test, the rarest rare in train.
    from serengeti_tf.demo.runner import SMOKE_LONG_TAIL

    counts = pd.read_csv(out / "prepared" / "counts.csv").set_index("species")
    expected = {name.lower(): parts for name, parts in SMOKE_LONG_TAIL.split_counts().items()}
    assert {name: (row.train, row.val, row.test) for name, row in counts.iterrows()} == expected
    assert "SYNTHETIC" in result.stdout
    runs = pd.read_csv(out / "experiment" / "runs.csv")
    assert list(zip(runs["sampler"], runs["phase"])) == [("none", 1), ("rus", 1), ("rus", 2)]
    report = (out / "experiment" / "report" / "report.md").read_text()
    assert "Macro F1" in report and "baseline" in report
    # Every step saved the config that produced it.
    for folder in (out / "prepared", out / "experiment", *sorted((out / "experiment" / "runs" / "seed0").iterdir())):
        assert yaml.safe_load((folder / "config.yaml").read_text())["model"]["input_size"] == 32
    # A rerun continues instead of redoing or refusing: everything is already there.
    again = _serengeti("demo", "--smoke", "-o", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already" in again.stdout


# ---------------------------------------------------------------------------------------------
# Budget sizing with a stub throughput (no TensorFlow work)
# ---------------------------------------------------------------------------------------------

def _stub(img_s_at_48: float, img_s_at_32: float | None = None, overhead: float = 5.0):
    from serengeti_tf.demo.budget import Throughput

    img_s_at_32 = img_s_at_32 if img_s_at_32 is not None else 2 * img_s_at_48
    return Throughput({32: img_s_at_32, 48: img_s_at_48}, {32: overhead, 48: overhead}, save_seconds=1.0,
                      render_images_per_second=60.0)


def test_budget_sizing_fits_the_plan_share_of_the_budget_on_any_machine_speed():
    from serengeti_tf.demo.budget import PLAN_FRACTION, PRESETS, choose_settings

    chosen = []
    for speed in (3000, 800, 300, 150, 90, 60, 40):  # img/s at 48 px: ~5x day-to-day swings and beyond
        settings = choose_settings(600, _stub(speed))
        assert settings.fits and settings.estimated_seconds <= PLAN_FRACTION * 600, speed
        preset = next(i for i, p in enumerate(PRESETS) if (p.species, p.input_size, p.samplers, p.seeds) ==
                      (settings.species, settings.input_size, settings.samplers, settings.seeds))
        chosen.append((preset, -settings.epochs))
        assert "none" in settings.samplers and len(settings.samplers) >= 2  # baseline + a two-phase sampler
        assert f"{settings.input_size}px" in settings.reason
    # A slower machine never gets a richer demo than a faster one.
    assert chosen == sorted(chosen)
    assert chosen[0][0] == 0 and chosen[-1][0] > 0


def test_budget_sizing_scales_with_the_budget_and_says_when_nothing_fits():
    from serengeti_tf.demo.budget import choose_settings

    short, long = choose_settings(300, _stub(150)), choose_settings(1800, _stub(150))
    assert short.estimated_seconds <= 0.8 * 300 and long.estimated_seconds > 2 * short.estimated_seconds
    hopeless = choose_settings(60, _stub(1))
    assert not hopeless.fits and "no preset fits" in hopeless.reason and hopeless.estimated_seconds > 60
    with pytest.raises(UserError, match="must be > 0 minutes, got -1"):
        choose_settings(-60, _stub(30))


def test_time_already_spent_counts_against_the_budget():
    from serengeti_tf.demo.budget import PLAN_FRACTION, choose_settings, refit_epochs

    fresh, late = choose_settings(600, _stub(150)), choose_settings(600, _stub(150), elapsed_seconds=200)
    assert late.estimated_seconds <= PLAN_FRACTION * 600 and late.estimated_seconds < fresh.estimated_seconds + 200
    # After prepare, a run that fell behind re-fits its epochs (never more than chosen).
    from serengeti_tf.demo.budget import approximate_counts

    train, splits = approximate_counts(fresh.species)
    same = refit_epochs(fresh, _stub(150), elapsed_seconds=30, train_counts=train, split_counts=splits)
    assert same == fresh
    behind = refit_epochs(fresh, _stub(150), elapsed_seconds=300, train_counts=train, split_counts=splits)
    assert behind.epochs < fresh.epochs and "after prepare" in behind.reason
    # Never below the preset's epoch floor (fewer do not learn the species): then it says it will not fit.
    hopeless = refit_epochs(fresh, _stub(150), elapsed_seconds=460, train_counts=train, split_counts=splits)
    assert hopeless.epochs == fresh.min_epochs >= 6 and not hopeless.fits
    assert "fewer do not learn the species" in hopeless.reason


def test_throughput_between_probed_sizes_follows_a_power_law():
    from serengeti_tf.demo.budget import Throughput

    def measured(at_32, at_64):
        return Throughput({32: at_32, 64: at_64}, {32: 5.0, 64: 5.0}, save_seconds=1.0, render_images_per_second=60)

    stub = measured(40, 10)  # 4x faster at a quarter of the pixels: proportional to pixel count
    assert stub.at(48)[0] == pytest.approx(40 * (32 / 48) ** 2)
    flat = measured(40, 20)  # 2x for 4x pixels
    assert 20 < flat.at(48)[0] < 40 and flat.at(64) == (20, 5.0)


def test_demo_settings_go_into_the_config():
    from serengeti_tf.demo.budget import choose_settings

    settings = choose_settings(600, _stub(60))
    config = demo_config(settings=settings, overrides=["train.batch_size=16"])
    assert (config.model.input_size, config.train.epochs, config.data.image_size) == (
        settings.input_size, settings.epochs, settings.image_size)
    assert config.experiment.samplers == list(settings.samplers) and config.train.batch_size == 16
    assert config.experiment.seeds == settings.seeds and config.data.split_fractions == [0.6, 0.1, 0.3]
    assert demo_config(settings=settings).train.batch_size == 32
    assert config.data.image_size >= config.model.input_size


def test_a_demo_folder_sized_for_another_budget_is_refused(tmp_path):
    from serengeti_tf.demo.budget import choose_settings
    from serengeti_tf.demo.runner import _write_record, plan_demo

    _write_record(tmp_path, 10, choose_settings(600, _stub(150)), None)
    with raises_as_cli(match="sized for a 10-minute budget, got --minutes 5"):
        plan_demo(tmp_path, 5, print)
    reused, throughput, _ = plan_demo(tmp_path, 10, print)
    assert throughput is None and reused == choose_settings(600, _stub(150))
    # A folder from the older 52-class demo is refused with a message, not a TypeError.
    from serengeti_tf.io_utils import write_json

    write_json(tmp_path / "demo.json", {"minutes": 10, "settings": {"scale": 0.015}})
    with pytest.raises(UserError, match="older serengeti-tf demo"):
        plan_demo(tmp_path, 10, print)


def test_help_texts_speak_to_users():
    verbs = ("train", "experiment", "demo", "evaluate", "compare", "prepare", "predict", "plan", "demo-data")
    results = dict(zip(verbs, run_together([_command(verb, "--help") for verb in verbs], timeout=1200)))
    for verb, result in results.items():
        assert result.returncode == 0, result.stderr
        assert "issue" not in result.stdout.lower(), verb
    assert "--minutes" in results["demo"].stdout


def test_missing_tensorflow_is_a_one_line_error_naming_the_extras(monkeypatch, capsys):
    import click

    from serengeti_tf_cli import main as cli_main

    @click.command("needs-tf")
    @click.argument("module")
    def needs_tf(module):
        raise ModuleNotFoundError(f"No module named '{module}'", name=module)

    monkeypatch.setattr(cli_main, "_register", lambda: None)
    monkeypatch.setitem(cli_main.cli.commands, "needs-tf", needs_tf)
    with pytest.raises(SystemExit) as exited:
        cli_main.main(["needs-tf", "tensorflow"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: TensorFlow is not installed") and "[cpu]" in err and len(err.splitlines()) == 1
    with pytest.raises(ModuleNotFoundError):  # any other missing module is a real bug, not hidden
        cli_main.main(["needs-tf", "yaml_extra"])


def test_tensorflow_start_up_notes_are_filtered_but_real_errors_kept():
    from serengeti_tf.tf_start import kept_lines

    captured = "\n".join([
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. You may see ...",
        "I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
        "E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        "E0000 00:00:1.0 1 something.cc:1] a real failure",
        "UserWarning: something Python wants you to see"])
    assert kept_lines(captured, gpu_found=False) == ["E0000 00:00:1.0 1 something.cc:1] a real failure",
                                                     "UserWarning: something Python wants you to see"]
    # With a GPU present, CUDA trouble is news: it stays.
    assert any("cuInit" in line for line in kept_lines(captured, gpu_found=True))


# ---------------------------------------------------------------------------------------------
# The verdict lines, from a hand-written verdict.json (the report's schema)
# ---------------------------------------------------------------------------------------------

def test_verdict_picks_the_best_phase2_model_against_the_baseline(tmp_path):
    import json
    import shutil

    from serengeti_tf.demo.verdict import read_verdict, verdict_lines

    shutil.copy(REPO_ROOT / "tests" / "data" / "verdict_fixture.json", tmp_path / "verdict.json")
    lines = verdict_lines(read_verdict(tmp_path), tmp_path)
    assert len(lines) == 3
    # ros phase 2 (+0.052) beats rus phase 2 (-0.01); phase-1 and "vs its phase 1" rows are not candidates.
    assert "baseline vs ros phase 2" in lines[0] and "2 seeds" in lines[0] and "seed and test-image noise" in lines[0]
    assert "Δ macro F1 +0.052 [+0.013, +0.091] (better)" in lines[0]
    assert "Δ tail macro F1 (tail = train count < 95) +0.100 [no interval] (no verdict)" in lines[1]
    assert lines[2].startswith("in words: ros phase 2's macro F1 is higher") and "not judged" in lines[2]
    assert lines[2].endswith("ROS two-phase vs baseline, over 2 seeds.")
    # Whatever the sign: when every two-phase model is worse, the least bad one is still reported.
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    for comparison in verdict["comparisons"]:
        comparison["metrics"]["macro_f1"].update(delta=-abs(comparison["metrics"]["macro_f1"]["delta"]) - 0.1,
                                                 verdict="worse")
        comparison["seed_aware"] = False
    lines = verdict_lines(verdict, tmp_path)
    assert "baseline vs rus phase 2" in lines[0] and "-0.110" in lines[0] and "(worse)" in lines[0]
    assert "seed noise not included" in lines[0] and "lower than the baseline's" in lines[2]


def test_verdict_says_so_when_the_report_wrote_none(tmp_path):
    from serengeti_tf.demo.verdict import read_verdict, verdict_lines

    assert read_verdict(tmp_path) is None
    lines = verdict_lines(None, tmp_path)
    assert len(lines) == 1 and "no verdict.json" in lines[0] and str(tmp_path) in lines[0]
    assert "no phase-2 model" in verdict_lines({"comparisons": []}, tmp_path)[0]


# ---------------------------------------------------------------------------------------------
# The demo's data design: a learnable long tail (long_tail.py)
# ---------------------------------------------------------------------------------------------

def test_every_preset_keeps_a_real_long_tail_with_scorable_species():
    from serengeti_tf.demo.budget import LARGEST_IMAGES, PRESETS
    from serengeti_tf.demo.long_tail import IMBALANCE, MIN_TEST_IMAGES, LongTail

    for preset in PRESETS:
        tail = LongTail(preset.species, LARGEST_IMAGES)
        parts = tail.split_counts()
        assert len(parts) == preset.species and len(set(tail.names())) == preset.species
        assert tail.imbalance() >= IMBALANCE >= 50, preset
        assert min(p[2] for p in parts.values()) >= MIN_TEST_IMAGES >= 5, preset  # every species scorable
        train = list(tail.train_counts().values())
        assert train == sorted(train, reverse=True)  # most frequent first, falling


def test_the_paper_rules_land_on_the_paper_for_the_papers_counts_and_move_with_the_tail():
    from serengeti_tf.demo.long_tail import LongTail, paper_rules_on_long_tail
    from serengeti_tf.species import PAPER_TRAIN_COUNTS

    assert paper_rules_on_long_tail(PAPER_TRAIN_COUNTS) == {
        "sampler": {"ros_thresholds": [100, 500, 1000, 5000], "ros_cap": 5000, "rus_cap": 15000},
        "eval": {"head_min": 5000, "tail_max": 500}}
    train = list(LongTail(8, 834).train_counts().values())
    rules = paper_rules_on_long_tail(train)
    thresholds = rules["sampler"]["ros_thresholds"]
    assert min(train) < thresholds[0] < thresholds[1] < thresholds[2] < thresholds[3] <= max(train)
    # The paper's head (>= 5000) and tail (< 500) both hold species of the demo's tail.
    head = [n for n in train if n >= rules["eval"]["head_min"]]
    tail = [n for n in train if n < rules["eval"]["tail_max"]]
    assert head and tail and len(head) + len(tail) < len(train) + 1
    with pytest.raises(UserError, match="smallest < largest"):
        paper_rules_on_long_tail([5, 5])


def test_the_long_tail_is_drawn_one_closeup_per_capture():
    from serengeti_tf.demo.capture_plan import plan_captures
    from serengeti_tf.demo.long_tail import LongTail

    tail = LongTail(5, 120)
    plan = plan_captures(seed=3, long_tail=tail)
    single = plan["species"].map(len) == 1
    labelled = plan[single & ~plan["species"].map(lambda s: s[0] in ("blank", "human"))]
    per_species = labelled["species"].map(lambda s: s[0]).value_counts().to_dict()
    assert per_species == tail.image_counts()
    assert (labelled["frames"] == 1).all() and labelled["closeup"].all()
    assert not plan_captures(scale=0.003)["closeup"].any()
    with pytest.raises(UserError, match="2-10 species, got 11"):
        LongTail(11, 120).image_counts()


def test_the_report_section_records_the_design_and_the_verdict_once(tmp_path):
    from serengeti_tf.demo.budget import choose_settings
    from serengeti_tf.demo.runner import REPORT_SECTION, _add_report_section

    report = tmp_path / "report.md"
    report.write_text("# Experiment report\n\nbody\n")
    settings = choose_settings(600, _stub(150))
    for _ in range(2):  # a rerun replaces the section instead of adding another
        _add_report_section(report, settings, {"wall_seconds": 420.0}, ["verdict: a", "in words: b"])
    text = report.read_text()
    assert text.count(REPORT_SECTION) == 1 and text.startswith("# Experiment report")
    assert f"SYNTHETIC: {settings.species} species on a long tail" in text
    assert "(imbalance 50x)" in text and "| test images, smallest species | 5 |" in text
    assert "| wall time | 7.0 min |" in text and "    verdict: a\n    in words: b" in text
