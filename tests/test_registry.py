"""Registries of named choices: one home per kind, and everything else (CLI, config, reports) follows it.

Also shows the issue-11 promise: a new sampler or loss is one registration plus its function,
and then `--help`, config validation and the comparison report know it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from harness import RegistryChoiceTests, check_choice, every_choice
from helpers import invoke_cli

from serengeti_tf import choices
from serengeti_tf import config as cfg
from serengeti_tf.errors import UserError
from serengeti_tf.registry import Registry


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
