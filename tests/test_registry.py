"""Registries of named choices: one home per kind, and everything else (CLI, config, reports) follows it.

Also shows the issue-11 promise: a new sampler or loss is one registration plus its function,
and then `--help`, config validation and the comparison report know it.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from harness import RegistryChoiceTests, check_choice, every_choice
from helpers import invoke_cli

from serengeti_tf import choices
from serengeti_tf import config as cfg
from serengeti_tf.errors import UserError
from serengeti_tf.registry import Registry, setting_field


def _help(verb: str) -> str:
    result = invoke_cli([verb, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


# ---- the Registry itself ----------------------------------------------------------------------

def test_registry_keeps_order_and_returns_the_decorated_function():
    fruit = Registry("fruit")

    @fruit.register("pear")
    def pear():
        return "a pear"

    fruit.register("apple", len)
    assert fruit.names() == ("pear", "apple") and list(fruit) == ["pear", "apple"]
    assert pear() == "a pear" and fruit.lookup("pear") is pear and fruit.lookup("apple") is len
    assert "apple" in fruit and "plum" not in fruit and ["a", "list"] not in fruit
    assert fruit.one_of("any") == "one of any, pear, apple"
    fruit.unregister("apple")
    assert fruit.names() == ("pear",)


def test_unknown_name_is_one_user_error_naming_kind_value_and_known_names():
    fruit = Registry("fruit")
    fruit.register("pear", object())
    fruit.register("apple", object())
    with pytest.raises(UserError, match=r"^unknown fruit 'plum'; known: pear, apple$"):
        fruit.lookup("plum")
    with pytest.raises(UserError, match=r"^unknown fruit \['pear'\]; known: pear, apple$"):
        fruit.lookup(["pear"])


def test_registering_a_name_twice_is_refused():
    fruit = Registry("fruit")
    fruit.register("pear", object())
    with pytest.raises(ValueError, match="fruit 'pear' is already registered"):
        fruit.register("pear", object())


def test_registry_imports_its_owner_on_first_use_only(monkeypatch):
    imported = []
    monkeypatch.setattr("importlib.import_module", lambda name: imported.append(name))
    lazy = Registry("thing", owner="some.owner")
    assert imported == []
    lazy.names()
    lazy.names()
    assert imported == ["some.owner"]


# ---- every name of every kind: the standard checks of tests/harness.py -------------------------

class TestEveryRegisteredChoice(RegistryChoiceTests):
    """--help, config validation, the misspelling error, the builder and the design notes, for every
    name of every registry in `choices.ALL` (ids `kind:name`)."""


def test_every_registry_has_an_owner_that_imports_without_tensorflow():
    import subprocess
    import sys

    code = ("import sys\nfrom serengeti_tf import choices\n"
            "for registry in choices.ALL:\n    registry.names()\n"
            "from serengeti_tf import config\nconfig.resolve()\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
            "print(heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---- a new sampler and a new loss: one registration each ----------------------------------------

@pytest.fixture
def toy_sampler_and_loss():
    """Registers `zz_toy` (a sampler that doubles every class) and `toy_loss`; unregisters after."""

    def doubled(counts: np.ndarray, sampler) -> np.ndarray:
        return counts * 2

    def toy_loss(train_config, counts, weights):
        return ("toy loss", tuple(counts), weights)

    choices.SAMPLERS.register("zz_toy", doubled)
    choices.LOSSES.register("toy_loss", toy_loss)
    try:
        yield
    finally:
        choices.SAMPLERS.unregister("zz_toy")
        choices.LOSSES.unregister("toy_loss")


def test_a_registered_toy_sampler_and_loss_show_up_everywhere(toy_sampler_and_loss, tmp_path):
    from serengeti_tf.data.sampling import sampling_plan
    from serengeti_tf.evaluate import reporting as rp

    # The harness's standard checks cover them, with no table to edit.
    ids = {param.id for param in every_choice()}
    assert {"sampler:zz_toy", "loss:toy_loss"} <= ids
    check_choice(choices.SAMPLERS, "zz_toy")
    check_choice(choices.LOSSES, "toy_loss")
    # --help of train lists both; plan's help lists the sampler.
    train_help = _help("train")
    assert "|zz_toy]" in train_help and "|toy_loss]" in train_help
    assert "zz_toy" in _help("plan")
    # Config validation accepts them (and the experiment grid takes the sampler).
    config = cfg.resolve(overrides=["sampler.name=zz_toy", "train.loss=toy_loss",
                                    "experiment.samplers=[none, zz_toy]"])
    assert (config.sampler.name, config.train.loss) == ("zz_toy", "toy_loss")
    # The owners use them.
    plan = sampling_plan({"a": 3, "b": 0, "c": 5}, config.sampler)
    assert plan["target"].tolist() == [6, 0, 10]
    assert choices.LOSSES.lookup("toy_loss")(config.train, np.array([3, 5]), None) == ("toy loss", (3, 5), None)
    # The comparison report lists the toy sampler's model in registration order: after the paper's
    # samplers, before a sampler nobody registered (whatever the names' alphabetical order).
    from test_reporting import BASE, RUS1, fake_run

    runs = [fake_run(tmp_path, "aa-phase1", "aa_unregistered", 1, RUS1),
            fake_run(tmp_path, "zz-phase1", "zz_toy", 1, RUS1),
            fake_run(tmp_path, "rus-phase1", "rus", 1, RUS1),
            fake_run(tmp_path, "none-phase1", "none", 1, BASE)]
    rp.compare_runs(runs, tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "macro_results.csv", keep_default_na=False)
    assert list(table["model"]) == ["baseline", "rus", "zz_toy", "aa_unregistered"]


def test_after_cleanup_the_toy_names_are_unknown_again():
    assert "zz_toy" not in choices.SAMPLERS and "toy_loss" not in choices.LOSSES
    with pytest.raises(UserError, match="sampler.name must be one of none, ros"):
        cfg.resolve(overrides=["sampler.name=zz_toy"])


def test_a_head_method_that_fits_on_train_features_says_so_in_its_registration():
    from serengeti_tf.train import head_choices
    from serengeti_tf.train.progress import run_work

    assert [n for n in choices.HEAD_REBALANCINGS if head_choices.fits_on_train_features(n)] == ["crt"]

    @head_choices.register_fitting_head("toy_refit")
    def toy_refit(train_config, head):
        return None

    try:
        # The grid's work counts the train views of a toy method like cRT's, with no other edit.
        config = cfg.resolve(overrides=["train.feature_views=3", "train.head_rebalancing=toy_refit"])
        work = run_work(config, {"train": 10, "val": 2, "test": 2}, 10, branches_from_trained=True)
        assert work == run_work(cfg.resolve(overrides=["train.feature_views=3", "train.head_rebalancing=crt"]),
                                {"train": 10, "val": 2, "test": 2}, 10, branches_from_trained=True)
        assert work.once_forward == 3 * 10 + 2 + 2
        tau_norm = cfg.resolve(overrides=["train.feature_views=3", "train.head_rebalancing=tau_norm"])
        assert run_work(tau_norm, {"train": 10, "val": 2, "test": 2}, 10, branches_from_trained=True).once_forward \
            == 10 + 2 + 2
    finally:
        choices.HEAD_REBALANCINGS.unregister("toy_refit")


# ---- settings beside their choice ------------------------------------------------------------------

@pytest.mark.parametrize("registry", [r for r in choices.ALL if r.settings()], ids=lambda r: r.kind)
def test_a_setting_kept_as_a_section_field_agrees_with_its_declaration(registry):
    sections = {"train": cfg.TrainConfig, "sampler": cfg.SamplerConfig, "export": cfg.ExportConfig}
    section = sections[registry.section]
    hints = typing.get_type_hints(section)
    for declared in registry.settings():
        assert declared.name in hints, f"{declared.key} is no field of {section.__name__}"
        assert hints[declared.name] == declared.type, declared.key
        assert getattr(section(), declared.name) == declared.default
        # The rule is applied: the error names the key and what it allows.
        bad = "not a value" if declared.type is not str else 123
        with pytest.raises(UserError, match=f"config: {declared.key} must be"):
            cfg.resolve(updates=[cfg.nested(declared.key, bad)])


def test_a_settings_field_without_rule_and_help_is_refused():
    @dataclass(frozen=True)
    class Bare:
        toy_alpha: float = 0.5

    fruit = Registry("fruit", key="train.fruit")
    with pytest.raises(ValueError, match=r"Bare.toy_alpha of fruit 'pear' must be made with registry.setting"):
        fruit.register("pear", object(), settings=Bare)
    assert "pear" not in fruit


def test_two_choices_declaring_one_key_differently_are_refused():
    @dataclass(frozen=True)
    class One:
        toy_alpha: float = setting_field(0.5, lambda v: v > 0, "a float > 0", "alpha")

    @dataclass(frozen=True)
    class Other:
        toy_alpha: float = setting_field(0.7, lambda v: v > 0, "a float > 0", "alpha")

    fruit = Registry("fruit", key="train.fruit")
    fruit.register("pear", object(), settings=One)
    fruit.register("plum", object(), settings=One)  # sharing the class is fine
    with pytest.raises(ValueError, match=r"fruit 'apple' declares train.toy_alpha unlike pear, plum"):
        fruit.register("apple", object(), settings=Other)
    assert [s.choices for s in fruit.settings()] == [("pear", "plum")]


def test_readme_choices_table_is_generated_from_the_registries():
    from serengeti_tf import options_table

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert options_table.readme_table(readme) == options_table.markdown(), \
        "README's choices table is stale: run `python -m serengeti_tf.options_table README.md`"


# The two promises of docs/design.md: a loss with a parameter and a sampler with a parameter are
# each one settings dataclass plus one registered builder (in the owner module; here, the test).

@dataclass(frozen=True)
class ToyFocalSettings:
    toy_gamma: float = setting_field(0.5, lambda v: 0 <= v <= 5, "a float in [0, 5]", "the toy's focusing exponent")


@pytest.fixture
def toy_loss_with_a_parameter():
    """Registers `toy_focal` (a focal loss with its own gamma setting, `train.toy_gamma`); records the
    gamma every build used; unregisters after."""
    built = []

    @choices.LOSSES.register("toy_focal", settings=ToyFocalSettings, help="a toy focal loss")
    def toy_focal(train_config, counts, weights):
        from serengeti_tf.train.losses import FocalLoss

        settings = choices.LOSSES.settings_for("toy_focal", train_config)
        built.append(settings.toy_gamma)
        return FocalLoss(settings.toy_gamma, class_weights=weights)

    try:
        yield built
    finally:
        choices.LOSSES.unregister("toy_focal")


def test_a_toy_loss_with_a_parameter_is_one_registration(toy_loss_with_a_parameter, tmp_path):
    check_choice(choices.LOSSES, "toy_focal")  # the standard checks of tests/harness.py
    # --help lists it with its setting and default.
    assert "toy_focal: a toy focal loss (train.toy_gamma = 0.5)" in " ".join(_help("train").split())
    # Config validation and --set take the setting; its rule refuses a bad value, naming the key.
    config = cfg.resolve(overrides=["train.loss=toy_focal", "train.toy_gamma=1.5"])
    assert config.train.toy_gamma == 1.5 and cfg.resolve().train.toy_gamma == 0.5
    with pytest.raises(UserError, match=r"^config: train.toy_gamma must be a float in \[0, 5\], got 9.0$"):
        cfg.resolve(overrides=["train.toy_gamma=9"])
    with pytest.raises(UserError, match="train.toy_gamma must be float, got 'high'"):
        cfg.resolve(overrides=["train.toy_gamma=high"])
    # A tiny training step compiles with it (the loss `fitting` builds from the config)...
    import keras

    from serengeti_tf.train import fitting

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    fitting.compile_model(model, config.train, [5, 1])
    model.fit(np.ones((4, 3), np.float32), np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    assert toy_loss_with_a_parameter == [1.5] and model.loss.gamma == 1.5
    # ... and a run's config.yaml keeps the setting, at the end of `train`, and reads back.
    cfg.save_config(config, tmp_path)
    saved = cfg.load_saved(tmp_path / "config.yaml")
    assert saved == config and list(cfg.to_dict(saved)["train"])[-1] == "toy_gamma"
    assert "toy_gamma: 1.5" in (tmp_path / "config.yaml").read_text()


@dataclass(frozen=True)
class ToyCapSettings:
    zz_cap: int = setting_field(4, lambda v: v >= 1, "an int >= 1", "no class keeps more than this")


@pytest.fixture
def toy_sampler_with_a_parameter():
    """Registers `zz_capped` (every class cut to `sampler.zz_cap`); unregisters after."""

    @choices.SAMPLERS.register("zz_capped", settings=ToyCapSettings, help="a toy cap")
    def capped(counts: np.ndarray, sampler) -> np.ndarray:
        return np.minimum(counts, choices.SAMPLERS.settings_for("zz_capped", sampler).zz_cap)

    try:
        yield
    finally:
        choices.SAMPLERS.unregister("zz_capped")


def test_a_toy_sampler_with_a_parameter_is_one_registration(toy_sampler_with_a_parameter, tmp_path):
    check_choice(choices.SAMPLERS, "zz_capped")  # the standard checks of tests/harness.py
    assert "zz_capped: a toy cap (sampler.zz_cap = 4)" in " ".join(_help("train").split())
    with pytest.raises(UserError, match=r"^config: sampler.zz_cap must be an int >= 1, got 0$"):
        cfg.resolve(overrides=["sampler.zz_cap=0"])
    # `serengeti-tf plan` with --set: the plan uses the setting; plan's config.yaml records it.
    (tmp_path / "counts.csv").write_text("species,count\na,10\nb,2\nc,0\n")
    result = invoke_cli(["plan", "--counts", str(tmp_path / "counts.csv"), "--sampler", "zz_capped",
                         "--set", "sampler.zz_cap=3", "-o", str(tmp_path / "plan")])
    assert result.exit_code == 0, result.output
    plan = pd.read_csv(tmp_path / "plan" / "plan.csv")
    assert plan["target"].tolist() == [3, 2, 0]
    saved = yaml.safe_load((tmp_path / "plan" / "config.yaml").read_text())
    assert list(saved["sampler"].items())[-1] == ("zz_cap", 3)
    # Unknown keys still name the section's keys, the registered setting among them.
    with pytest.raises(UserError, match=r"unknown key 'sampler.zz_cpa' .*uniform_target, zz_cap\)"):
        cfg.resolve(overrides=["sampler.zz_cpa=3"])


def test_after_cleanup_the_toy_settings_are_unknown_again():
    assert "zz_capped" not in choices.SAMPLERS and "toy_focal" not in choices.LOSSES
    with pytest.raises(UserError, match="unknown key 'train.toy_gamma'"):
        cfg.resolve(overrides=["train.toy_gamma=1"])
    assert "toy_gamma" not in cfg.to_dict(cfg.resolve())["train"]
