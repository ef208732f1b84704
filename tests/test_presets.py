"""`--preset NAME`: the shipped configs resolve by name from the installed package, from any folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import invoke_cli

from serengeti_tf import config as cfg
from serengeti_tf import presets
from serengeti_tf.errors import UserError

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_preset_names_are_the_shipped_yaml_files():
    assert presets.names() == tuple(sorted(p.stem for p in REPO_CONFIGS.glob("*.yaml")))
    assert {"paper", "demo"} <= set(presets.names())
    for name in presets.names():
        assert presets.path(name).read_bytes() == (REPO_CONFIGS / f"{name}.yaml").read_bytes()


def test_unknown_preset_is_one_line_listing_the_known_ones(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="unknown preset 'nope'; known: demo, paper"):
        presets.path("nope")
    monkeypatch.chdir(tmp_path)
    result = invoke_cli(["plan", "--preset", "nope"])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "'nope'" in errors[0] and "'demo'" in errors[0] and "'paper'" in errors[0]


def test_train_help_takes_a_preset_from_an_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke_cli(["train", "--preset", "paper", "--help"])
    assert result.exit_code == 0, result.output
    assert "--preset [demo|paper]" in result.output


def _plan_config(tmp_path: Path, *args: str) -> cfg.Config:
    """Runs `plan` on a tiny counts table with `args` and returns the config.yaml it saved."""
    counts = tmp_path / "counts.csv"
    counts.write_text("species,count\nzebra,500\nlion,20\n")
    out = tmp_path / "plan"
    result = invoke_cli(["plan", "--counts", str(counts), "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    return cfg.load_saved(out / "config.yaml")


def test_preset_demo_resolves_the_demo_values_from_an_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = cfg.resolve([REPO_CONFIGS / "demo.yaml"])
    assert expected != cfg.Config()  # the demo preset really differs from the defaults
    assert _plan_config(tmp_path, "--preset", "demo") == expected


def test_preset_is_read_before_config_files_then_set_then_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("train:\n  epochs: 5\n  batch_size: 16\nsampler:\n  ros_cap: 70\n")
    config = _plan_config(tmp_path, "--config", "mine.yaml", "--preset", "demo", "--set", "train.batch_size=8",
                          "--set", "sampler.name=ros", "--sampler", "rus")
    demo = cfg.resolve([REPO_CONFIGS / "demo.yaml"])
    assert config.train.epochs == 5 and demo.train.epochs != 5  # --config file over the preset
    assert config.sampler.ros_cap == 70 and demo.sampler.ros_cap != 70
    assert config.sampler.rus_cap == demo.sampler.rus_cap  # preset keys the file does not name stay
    assert config.train.batch_size == 8  # --set over the file
    assert config.sampler.name == "rus"  # the command's flag over --set


def test_installed_cli_resolves_a_preset_from_another_folder(tmp_path):
    """The console script, run from a folder without configs/: the preset is found, and the run
    stops later, on the missing metadata file."""
    script = Path(sys.executable).with_name("serengeti-tf")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "serengeti_tf_cli.main"]
    result = subprocess.run(command + ["prepare", "out", "--preset", "paper", "--image-root", ".",
                                       "--metadata", "missing.csv"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr
    assert "paper.yaml" not in result.stderr and "config:" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "missing.csv" in errors[0], result.stderr
