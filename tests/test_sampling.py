"""Sampling plans: golden numbers from the paper, the extra samplers, errors, and `serengeti-tf plan`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serengeti_tf import config as cfg
from serengeti_tf.config import SamplerConfig
from serengeti_tf.data import sampling
from serengeti_tf.errors import UserError

# The two rows the paper's Tables 5 and 6 print swapped (see ../shared/paper/README.md).
SWAPPED = ("vervetMonkey", "porcupine")


@pytest.fixture(scope="module")
def paper_counts(shared_data) -> pd.DataFrame:
    path = shared_data.parent / "paper" / "s9_class_counts.csv"
    if not path.is_file():
        pytest.skip(f"paper tables not found at {path}")
    return pd.read_csv(path)


def _plan(counts: dict, name: str, **kwargs) -> pd.DataFrame:
    return sampling.sampling_plan(counts, SamplerConfig(name=name, **kwargs))


def _unswap(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The paper's column with the documented vervetMonkey/porcupine swap undone."""
    values = frame.set_index("species")[column].copy()
    a, b = SWAPPED
    values[a], values[b] = values[b], values[a]
    return values.loc[frame["species"]].to_numpy()


@pytest.mark.parametrize("name,column,total", [("ros", "train_ros", 231_437), ("rus", "train_rus", 85_029)])
def test_paper_tables_5_and_6(paper_counts, name, column, total):
    counts = dict(zip(paper_counts["species"], paper_counts["train"]))
    plan = _plan(counts, name)
    assert list(plan["species"]) == list(paper_counts["species"])
    assert list(plan["original"]) == list(paper_counts["train"])
    np.testing.assert_array_equal(plan["target"].to_numpy(), _unswap(paper_counts, column))
    assert plan["target"].sum() == total == paper_counts[column].sum()
    # Without undoing the swap exactly those two rows differ.
    differs = plan.loc[plan["target"].to_numpy() != paper_counts[column].to_numpy(), "species"]
    assert sorted(differs) == sorted(SWAPPED)


@pytest.mark.parametrize("name,total,cap", [("ros_rus_15k", 161_212, 15000), ("ros_rus_5k", 131_212, 5000)])
def test_paper_ros_rus_totals(paper_counts, name, total, cap):
    counts = dict(zip(paper_counts["species"], paper_counts["train"]))
    plan = _plan(counts, name)
    assert plan["target"].sum() == total
    assert plan["target"].max() == cap
    ros = _plan(counts, "ros")
    np.testing.assert_array_equal(plan["target"], np.minimum(ros["target"], cap))


def test_ros_bands_and_cap():
    counts = {"a": 99, "b": 100, "c": 499, "d": 500, "e": 999, "f": 1000, "g": 1300, "h": 4999, "i": 5000,
              "j": 70000, "k": 1}
    plan = _plan(counts, "ros")
    expected = [990, 800, 3992, 3000, 5000, 4000, 5000, 5000, 5000, 70000, 10]
    assert list(plan["target"]) == expected
    assert plan.loc[plan["species"] == "b", "ratio"].item() == 8.0


def test_every_rule_is_configurable():
    counts = {"a": 10, "b": 50, "c": 300, "d": 40000}
    plan = _plan(counts, "ros", ros_thresholds=[20, 100], ros_multipliers=[3, 2.5], ros_cap=110)
    assert list(plan["target"]) == [30, 110, 300, 40000]
    assert list(_plan(counts, "rus", rus_cap=45)["target"]) == [10, 45, 45, 45]
    assert list(_plan(counts, "ros_rus_5k", rus_cap=200)["target"])[-1] == 200
    assert list(_plan(counts, "ros_rus_5k")["target"]) == [100, 500, 2400, 5000]


def test_none_uniform_sqrt_and_empty_classes():
    counts = {"big": 900, "mid": 100, "one": 1, "empty": 0}
    none = _plan(counts, "none")
    assert list(none["target"]) == [900, 100, 1, 0]
    assert list(none["ratio"]) == [1.0, 1.0, 1.0, 0.0]
    uniform = _plan(counts, "uniform")
    assert list(uniform["target"]) == [334, 334, 333, 0] and uniform["target"].sum() == 1001
    assert list(_plan(counts, "uniform", uniform_target=50)["target"]) == [50, 50, 50, 0]
    sqrt = _plan(counts, "sqrt")
    assert sqrt["target"].sum() == 1001 and sqrt["target"].iloc[3] == 0
    # sqrt(900) : sqrt(100) : sqrt(1) = 30 : 10 : 1 -> 732.44, 244.15, 24.41; the leftover 1 goes to .44
    assert list(sqrt["target"]) == [733, 244, 24, 0]
    for name in ("ros", "rus", "ros_rus_15k", "ros_rus_5k"):
        plan = _plan(counts, name)
        assert plan["target"].iloc[3] == 0 and plan["ratio"].iloc[3] == 0


def test_plan_is_pure_and_keeps_input_order():
    counts = {"z": 5, "a": 50000, "m": 300}
    copy = dict(counts)
    sampler = SamplerConfig(name="ros_rus_15k")
    first = sampling.sampling_plan(counts, sampler)
    assert counts == copy and sampler == SamplerConfig(name="ros_rus_15k")
    assert list(first["species"]) == ["z", "a", "m"]
    assert list(first.columns) == sampling.PLAN_COLUMNS
    pd.testing.assert_frame_equal(first, sampling.sampling_plan(counts, sampler))


def test_unknown_sampler_is_named_with_the_known_ones():
    with pytest.raises(UserError, match="unknown sampler 'smote'; known: none, ros, rus, .*sqrt"):
        sampling.sampling_plan({"a": 10}, SamplerConfig(name="smote"))


# Sampler settings are checked once, by `config.validate` (the one gate every command passes).
@pytest.mark.parametrize("kwargs,message", [
    ({"name": "smote"}, "sampler.name must be one of none, ros, rus"),
    ({"name": "ros", "ros_cap": 0}, "ros_cap must be an int >= 1, got 0"),
    ({"name": "rus", "rus_cap": -5}, "rus_cap must be an int >= 1 or null, got -5"),
    ({"name": "ros_rus_5k", "rus_cap": 0}, "rus_cap must be an int >= 1 or null, got 0"),
    ({"name": "uniform", "uniform_target": 0}, "uniform_target must be an int >= 1 or null, got 0"),
    ({"name": "ros", "ros_thresholds": [100, 50], "ros_multipliers": [2, 2]}, "increasing"),
    ({"name": "ros", "ros_thresholds": [100], "ros_multipliers": [2, 3]}, "same length"),
    ({"name": "ros", "ros_multipliers": [10, 8, 0.5, 4]}, ">= 1"),
])
def test_bad_sampler_settings(kwargs, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cfg.validate(cfg.Config(sampler=SamplerConfig(**kwargs)))


@pytest.mark.parametrize("counts,message", [({}, "no classes"), ({"a": -1}, "'a' must be an int >= 0, got -1"),
                                            ({"a": 2.5}, "got 2.5")])
def test_bad_counts(counts, message):
    with pytest.raises(UserError, match=message):
        _plan(counts, "ros")


def test_check_plan_matches():
    plan = _plan({"a": 10, "b": 5}, "ros")
    sampling.check_plan_matches(plan, ["a", "b"])
    with pytest.raises(UserError, match="class\\(es\\) the dataset lacks: b"):
        sampling.check_plan_matches(plan, ["a", "c"])
    with pytest.raises(UserError, match="no row for dataset class\\(es\\): c"):
        sampling.check_plan_matches(plan, ["a", "b", "c"])
    bad = plan.copy()
    bad.loc[1, "original"] = 0
    with pytest.raises(UserError, match="'b' has target 50 from 0 original"):
        sampling.check_plan_matches(bad, ["a", "b"])
    with pytest.raises(UserError, match="lacks column"):
        sampling.check_plan_matches(plan.drop(columns="target"), ["a", "b"])


def test_read_counts_csv(tmp_path):
    good = tmp_path / "counts.csv"
    good.write_text("species,count\nzebra,120\nrodents,1\n")
    assert sampling.read_counts_csv(good) == {"zebra": 120, "rodents": 1}
    bad = tmp_path / "bad.csv"
    bad.write_text("name,n\nzebra,1\n")
    with pytest.raises(UserError, match="must have columns species,count"):
        sampling.read_counts_csv(bad)
    text = tmp_path / "text.csv"
    text.write_text("species,count\nzebra,many\n")
    with pytest.raises(UserError, match="got 'many'"):
        sampling.read_counts_csv(text)
    with pytest.raises(UserError, match="not found"):
        sampling.read_counts_csv(tmp_path / "missing.csv")


def _run_cli(args: list[str]) -> int:
    from serengeti_tf_cli.main import main

    try:
        main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_plan_command_from_counts(tmp_path, capsys):
    counts = tmp_path / "counts.csv"
    counts.write_text("species,count\nzebra,20000\nlion,300\nrodents,1\n")
    out = tmp_path / "plan"
    assert _run_cli(["plan", "--sampler", "ros_rus_15k", "--counts", str(counts), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "20,301 original -> 17,410 phase-1 images" in printed
    plan = pd.read_csv(out / "plan.csv")
    assert list(plan.columns) == ["species", "original", "target", "ratio"]
    assert list(plan["target"]) == [15000, 2400, 10]
    assert (out / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from serengeti_tf import config as cfg
    assert cfg.load_saved(out / "config.yaml").sampler.name == "ros_rus_15k"
    # Same command again resumes; a different sampler into the same folder is refused.
    assert _run_cli(["plan", "--sampler", "ros_rus_15k", "--counts", str(counts), "-o", str(out)]) == 0
    assert _run_cli(["plan", "--sampler", "rus", "--counts", str(counts), "-o", str(out)]) == 2
    assert "already holds different output" in capsys.readouterr().err


def test_plan_command_from_dataset_and_errors(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "plan"
    assert _run_cli(["plan", "--sampler", "ros", "--data", str(tiny_dataset), "-o", str(out),
                     "--set", "sampler.ros_cap=40"]) == 0
    plan = pd.read_csv(out / "plan.csv")
    assert dict(zip(plan["species"], plan["target"])) == {"antelope": 40, "buffalo": 40, "cheetah": 40, "dikdik": 10}
    capsys.readouterr()
    assert _run_cli(["plan", "--sampler", "smote", "--data", str(tiny_dataset), "-o", str(tmp_path / "x")]) == 2
    assert "sampler.name must be one of" in capsys.readouterr().err
    assert _run_cli(["plan", "--sampler", "rus", "-o", str(tmp_path / "y")]) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert _run_cli(["plan", "--sampler", "rus", "--set", "sampler.rus_cap=0", "--data", str(tiny_dataset),
                     "-o", str(tmp_path / "z")]) == 2
    assert "rus_cap" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()
