"""`serengeti-tf demo` end to end at smoke size, through the installed console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from serengeti_tf.demo import demo_config

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_demo_settings_are_configs_demo_yaml():
    from serengeti_tf import config as cfg

    assert demo_config() == cfg.resolve([REPO_ROOT / "configs" / "demo.yaml"])
    assert demo_config(smoke=True).model.input_size < demo_config().model.input_size


def test_demo_overrides_win_over_smoke_settings():
    assert demo_config(smoke=True, overrides=["train.epochs=2"]).train.epochs == 2


def _serengeti(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("serengeti-tf")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "serengeti_tf_cli.main"]
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=1200)


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
