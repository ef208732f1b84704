"""Recipes: which recipe a config asks for, and that a new recipe is one class plus one registration
(docs/design.md, "Adding a recipe")."""

from __future__ import annotations

import dataclasses
import json

import pytest
from helpers import quiet, tiny_config

from serengeti_tf import choices
from serengeti_tf import config as cfg
from serengeti_tf.train import recipes, training


def test_recipe_for_follows_phase_and_phase2_augment():
    assert recipes.recipe_for(cfg.TrainConfig(phase=1)).name == "phase1"
    assert recipes.recipe_for(cfg.TrainConfig(phase=2)).name == "phase2_fast"
    assert recipes.recipe_for(cfg.TrainConfig(phase=2, phase2_augment=True)).name == "phase2_slow"
    assert recipes.recipe_for(cfg.TrainConfig(phase=1), branched=True).name == "rebalance"
    assert recipes.method_recipe("focal").name == "method"
    assert recipes.method_recipe("crt").name == "rebalance"


def test_the_plan_names_each_runs_recipe_and_what_it_is_compared_with(tmp_path):
    config = cfg.resolve(updates=[{"experiment": {"samplers": ["ros"], "seeds": 1, "methods": ["focal", "crt"]}}])
    planned = recipes.plan_runs(config, tmp_path)
    seed_dir = tmp_path / "runs" / "seed0"
    assert [(r.recipe, r.run_dir.name, r.label) for r in planned] == [
        ("phase1", "none-phase1", "none phase 1"), ("phase1", "ros-phase1", "ros phase 1"),
        ("phase2_fast", "ros-phase2", "ros phase 2"), ("method", "focal", "method focal"),
        ("rebalance", "crt", "method crt")]
    assert planned[2].compared_with == (("baseline", seed_dir / "none-phase1"), ("phase 1", seed_dir / "ros-phase1"))
    assert planned[4].compared_with == (("baseline", seed_dir / "none-phase1"),)
    assert planned[0].compared_with == ()
    without_baseline = cfg.resolve(updates=[{"experiment": {"samplers": ["ros"], "seeds": 1}}])
    assert recipes.plan_runs(without_baseline, tmp_path)[1].compared_with == (("phase 1", seed_dir / "ros-phase1"),)


class ToyPhase2(recipes.Phase2Fast):
    """A phase-2 variant with a trivial change: its own folder, label and lineage note."""

    name = "zz_toy_phase2"
    description = "phase 2 on cached features, noted as a toy"
    label_suffix = "+toy"

    def selects(self, train: cfg.TrainConfig) -> bool:
        return False  # only the plan asks for it

    def plan_for_sampler(self, config, seed, seed_dir, sampler, planned):
        return [dataclasses.replace(run, run_dir=run.run_dir.with_name(f"{sampler}-toy"), recipe=self.name)
                for run in super().plan_for_sampler(config, seed, seed_dir, sampler, planned)]

    def progress_label(self, run: recipes.PlannedRun) -> str:
        return f"{run.sampler} toy"

    def head_description(self, config: cfg.Config) -> str:
        return "toy: " + super().head_description(config)


@pytest.fixture
def toy_recipe():
    recipe = recipes.register(ToyPhase2())
    try:
        yield recipe
    finally:
        choices.RECIPES.unregister(recipe.name)


def test_a_registered_toy_recipe_is_planned_costed_and_trains(toy_recipe, phase1_run, tiny_dataset, tmp_path):
    config = cfg.resolve(updates=[{"experiment": {"samplers": ["none", "rus"], "seeds": 1}}])
    planned = recipes.plan_runs(config, tmp_path)
    toy = planned[-1]
    assert [r.recipe for r in planned] == ["phase1", "phase1", "phase2_fast", "zz_toy_phase2"]
    assert (toy.run_dir.name, toy.init_run.name, toy.phase, toy.label) == ("rus-toy", "rus-phase1", 2, "rus toy")
    counts = {"train": 48, "val": 8, "test": 8}
    work = recipes.grid_work(config, planned, {"a": 30, "b": 18}, counts)
    assert work[-1] == work[-2]  # costed as the phase-2 fast path it extends

    run = tmp_path / "toy"
    training.train(tiny_config(phase=2, epochs=1), tiny_dataset, run, init_run=phase1_run, on_event=quiet,
                   recipe=toy_recipe)
    lineage = json.loads((run / "lineage.json").read_text())
    assert lineage["head_trained_on"].startswith("toy: ") and lineage["phase"] == 2
    assert lineage["recipe"] == "zz_toy_phase2"  # reports label its runs `<model>+toy`
    assert "recipe" not in json.loads((phase1_run / "lineage.json").read_text())  # the default is not named
    assert (run / "model.keras").is_file()


def test_after_cleanup_the_toy_recipe_is_gone(tmp_path):
    assert "zz_toy_phase2" not in choices.RECIPES
    config = cfg.resolve(updates=[{"experiment": {"samplers": ["rus"], "seeds": 1}}])
    assert all(r.recipe != "zz_toy_phase2" for r in recipes.plan_runs(config, tmp_path))
