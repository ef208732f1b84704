"""Recipes: each way of producing a model is one registered object, and the grid's plan is read from them.

    recipe (registered name)   how it produces a model
    phase1                     ResNet-18 (or a pretrained backbone) trained on the sampler's re-balanced data
    phase2_fast                a phase-1 model's head retrained on cached pooled features (`phase2_augment` false)
    phase2_slow                the head retrained through the frozen backbone on augmented images
    method                     a loss / class-weighting method: phase 1 on the original distribution with
                               the method's `train.*` settings (`methods.py`)
    rebalance                  a head re-balancing method branched from the seed's baseline run, no training
                               (`training.rebalance_run`)

A recipe owns which data it trains on and the model it starts from (`train`, through the one
load-or-compile-then-fit path of `fitting.py`), what it checks of its inputs and writes to lineage,
what its run costs (`work`, for the grid ETA and the demo's budget) and where it sits in the grid:
the runs it adds to the plan, their folder names, progress labels and the runs each is compared with.

`plan_runs(config, out_dir)` is THE plan of an `experiment` grid (pure: no file is read or written);
the grid driver (`workflows/experiment.py`) runs it, and its comparisons are the ones the reports make.
`recipe_for(train_config)` is the recipe a single `train` command's config asks for.

Adding a recipe is one class registered with `register(...)` (see docs/design.md, "Adding a recipe").
This module imports without TensorFlow (a registry owner); what needs it is imported when called.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

from serengeti_tf import config as cfg
from serengeti_tf import events
from serengeti_tf.choices import RECIPES
from serengeti_tf.data import dataset as ds_reader
from serengeti_tf.data import sampling
from serengeti_tf.errors import UserError, setting
from serengeti_tf.models.pretrained import describe_source
from serengeti_tf.run_folder import MODEL, ExperimentFolder, Lineage, RunFolder
from serengeti_tf.train import distribution, fitting, methods, runs
from serengeti_tf.train.features import feature_batches, head_features_description, split_features
from serengeti_tf.train.head_choices import fits_on_train_features
from serengeti_tf.train.work import RunWork

# ---------------------------------------------------------------------------------------------
# What a recipe is handed and what it plans
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainContext:
    """Everything `training.train` has set up before a recipe trains: the validated config (at the
    input size the run uses), the folders, the resume state, the strategy, and the start of the model."""

    config: cfg.Config
    dataset_dir: Path
    init_run: Optional[Path]
    paths: runs.RunPaths
    state: runs.RunState
    strategy: object
    on_event: events.EventSink
    pretrained: Optional[tuple] = None  # (model with loaded backbone, lineage info) or None
    init_digest: Optional[str] = None  # sha256 of the init run's model.keras (phase 2)


@dataclass(frozen=True)
class PlannedRun:
    """One run of the grid: what it is, where it goes, where it starts from and what it is compared with."""

    seed: int
    sampler: str
    phase: int
    run_dir: Path
    init_run: Optional[Path] = None  # the phase-1 run a phase-2 run fine-tunes
    method: Optional[str] = None  # a `choices.IMBALANCE_METHODS` name; None for the paper's sampler runs
    trained_run: Optional[Path] = None  # the baseline run whose head a head re-balancing method changes
    recipe: str = "phase1"  # the registered recipe that produces it
    compared_with: tuple[tuple[str, Path], ...] = ()  # (reference name, reference run folder)

    @property
    def label(self) -> str:
        """How the grid's progress lines name the run (`rus phase 2`, `method focal`)."""
        return RECIPES.lookup(self.recipe).progress_label(self)


# ---------------------------------------------------------------------------------------------
# The recipes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """A way of producing a model: a stateless record whose class attributes say what it is and whose
    methods do it. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    phase: ClassVar[int] = 1  # the phase it writes to config and lineage
    branches_from_trained: ClassVar[bool] = False  # re-uses a trained run's model instead of training
    needs_baseline: ClassVar[bool] = False  # the grid must hold the seed's baseline run for it
    fits_cached_head: ClassVar[bool] = False  # fits a head on cached features of every train view
    # The final backbone is the init run's, so features it computed stay valid.
    backbone_frozen_from_init: ClassVar[bool] = False
    label_suffix: ClassVar[str] = ""  # appended to the model label of its runs (keeps its report group apart)
    # What its runs are compared with in reports and paired differences, in report order: "baseline"
    # (the same seed's baseline run), "phase 1" (the phase-1 run it started from).
    references: ClassVar[tuple[str, ...]] = ("baseline",)
    # The grid's ETA counts the epochs the run really trained (early stopping may cut them), not its plan's.
    epochs_cut_by_early_stopping: ClassVar[bool] = False

    # -- which config asks for it, and where it sits in the grid -------------------------------

    def selects(self, train: cfg.TrainConfig) -> bool:
        """True when a `train` command with these settings is this recipe."""
        return False

    def plan_for_sampler(self, config: cfg.Config, seed: int, seed_dir: Path, sampler: str,
                         planned: list[PlannedRun]) -> list[PlannedRun]:
        """Its runs for one sampler of one seed (`planned`: that sampler's runs planned so far)."""
        return []

    def handles_method(self, method: str) -> bool:
        """True when this recipe produces the runs of imbalance method `method`."""
        return False

    def plan_for_method(self, config: cfg.Config, seed: int, seed_dir: Path, method: str,
                        baseline: Optional[Path]) -> PlannedRun:
        raise NotImplementedError(f"recipe {self.name} plans no method runs")

    def progress_label(self, run: PlannedRun) -> str:
        return f"method {run.method}" if run.method else f"{run.sampler} phase {run.phase}"

    def compared_with(self, run_dir: Path, baseline: Optional[Path],
                      init: Optional[Path] = None) -> tuple[tuple[str, Path], ...]:
        """(reference, its run folder) for each of `references` the grid holds (the baseline is not
        compared with itself)."""
        found = {"baseline": baseline, "phase 1": init}
        return tuple((name, found[name]) for name in self.references if found[name] not in (None, run_dir))

    # -- training -----------------------------------------------------------------------------

    def check_inputs(self, config: cfg.Config, dataset_dir: Path, init_run: Optional[Path], class_map) -> None:
        """Refuses inputs this recipe cannot train from (before any folder is claimed)."""

    def training_sampler(self, config: cfg.Config) -> str:
        """The sampler whose plan the run trains on (lineage `training_sampler`)."""
        return config.sampler.name

    def train(self, ctx: TrainContext) -> dict:
        """Fits the model into `ctx.paths`; returns {"images_per_epoch", "lineage": {...}, ...}."""
        raise UserError(f"recipe {self.name} does not train a model of its own")

    # -- cost ---------------------------------------------------------------------------------

    def work(self, run_config: cfg.Config, split_counts: dict[str, int], epoch_images: int) -> RunWork:
        """Image passes of its run (`work.RunWork`); `epoch_images`: the sampler plan's images per epoch."""
        return self._trained_work(run_config, split_counts, epoch_images)

    def _train_views(self, run_config: cfg.Config, train_images: int) -> int:
        t = run_config.train
        return train_images * (t.feature_views if self.fits_cached_head or fits_on_train_features(t.head_rebalancing)
                               else 1)

    def _once_work(self, run_config: cfg.Config, split_counts: dict[str, int]) -> RunWork:
        """One pass of train (each cached view) + val through the backbone, then the test evaluation;
        head-only epochs are negligible next to that."""
        train, val, test = (int(split_counts.get(k, 0)) for k in ("train", "val", "test"))
        return RunWork(0, 0, 0, self._train_views(run_config, train) + val + test)

    def _trained_work(self, run_config: cfg.Config, split_counts: dict[str, int], images: int) -> RunWork:
        """`epochs` epochs of `images` training images plus validation, the re-balancing feature
        pass when the run re-balances its head, and the test evaluation."""
        train, val, test = (int(split_counts.get(k, 0)) for k in ("train", "val", "test"))
        t = run_config.train
        if t.steps_per_epoch:
            images = min(images, t.steps_per_epoch * t.batch_size)
        if t.validation_steps:
            val = min(val, t.validation_steps * run_config.eval.batch_size)
        feature_pass = self._train_views(run_config, train) + val if t.head_rebalancing != "none" else 0
        return RunWork(t.epochs, images, val, feature_pass + test)

    def __repr__(self) -> str:
        return f"<recipe {self.name}>"


class Phase1(Recipe):
    name = "phase1"
    description = "phase 1: the whole model trained on the sampler's re-balanced data"
    epochs_cut_by_early_stopping = True

    def selects(self, train: cfg.TrainConfig) -> bool:
        return train.phase == 1

    def plan_for_sampler(self, config, seed, seed_dir, sampler, planned):
        run_dir = seed_dir / f"{sampler}-phase1"
        return [PlannedRun(seed, sampler, 1, run_dir, recipe=self.name,
                           compared_with=self.compared_with(run_dir, seed_dir / "none-phase1"))]

    def check_inputs(self, config, dataset_dir, init_run, class_map) -> None:
        if config.train.init_weights:
            describe_source(config.train.init_weights)
        if init_run is not None:
            raise UserError(f"{setting('init_run')} is only used by phase 2, got {setting('init_run')} {init_run} "
                            f"with phase 1")

    def train(self, ctx: TrainContext) -> dict:
        from serengeti_tf.data import pipeline
        from serengeti_tf.models.resnet import build_model, freeze_stages

        config, pretrained, on_event = ctx.config, ctx.pretrained, ctx.on_event
        names = ds_reader.class_names(ctx.dataset_dir)
        plan = sampling.sampling_plan(ds_reader.train_counts(ctx.dataset_dir), config.sampler)
        sampling.check_plan_matches(plan, names)
        train_data, steps = pipeline.make_train_dataset(ctx.dataset_dir, plan, config, augment=config.train.augment,
                                                        seed=pipeline.data_seed(config),
                                                        same_order_on_every_worker=distribution.needs_same_order(config))
        steps = fitting.capped_steps(steps, config)
        # repeat(): Keras then draws exactly `steps` batches per epoch from one continuing stream.
        train_data = distribution.shard_by_data(train_data.repeat(), ctx.strategy)
        loss_counts = [int(n) for n in plan["target"]]

        def fresh():
            if pretrained is not None:
                on_event(events.Step(f"backbone initialised from {pretrained[1]['kind']} {pretrained[1]['path']} "
                                     f"({pretrained[1]['layers']} layers; head new)"))
                return pretrained[0]
            # Multi-replica: global batch statistics keep BN moving statistics equal on every replica.
            return build_model(config.model, len(names), synchronized_bn=ctx.strategy.num_replicas_in_sync > 1)

        model = fitting.load_or_compile(fitting.checkpoint_path(ctx.paths, ctx.state), fresh,
                                        lambda m: freeze_stages(m, config.train.freeze_stages),
                                        config.train, loss_counts, ctx.strategy)
        on_event(events.Step(f"phase 1: {config.model.name} {config.model.input_size}px, {len(names)} classes, "
                             f"sampler {config.sampler.name} ({int(plan['target'].sum())} images/epoch), {steps} "
                             f"steps of {config.train.batch_size} (global batch, "
                             f"{ctx.strategy.num_replicas_in_sync} replica(s))"))
        fitting.fit(model, train_data, steps, fitting.val_data(ctx.dataset_dir, config), config, ctx.paths,
                    ctx.state, save_best=fitting.save_full, save_last=fitting.save_full, on_event=on_event,
                    strategy=ctx.strategy)
        fine_tuning = {"init_weights": pretrained[1] if pretrained else None,
                       "freeze_stages": config.train.freeze_stages,
                       "backbone_learning_rate": config.train.backbone_learning_rate}
        return {"images_per_epoch": int(plan["target"].sum()),
                "lineage": {"images_per_epoch": int(plan["target"].sum()), **fine_tuning}}


class Phase2(Recipe):
    """Phase 2: a phase-1 model's backbone frozen, its head retrained on the ORIGINAL train distribution
    with a fresh optimizer. Subclasses say how the head sees the images (`fit_head`)."""

    phase = 2
    fits_cached_head = True
    backbone_frozen_from_init = True
    references = ("baseline", "phase 1")
    head_trained_on = ""

    def plan_for_sampler(self, config, seed, seed_dir, sampler, planned):
        if sampler == "none" or not self.takes_path(config.train):
            return []  # the baseline is one phase on the original distribution, as in the paper
        init = next(r.run_dir for r in planned if r.recipe == Phase1.name)
        run_dir = init.with_name(f"{sampler}-phase2")
        return [PlannedRun(seed, sampler, 2, run_dir, init, recipe=self.name,
                           compared_with=self.compared_with(run_dir, seed_dir / "none-phase1", init))]

    def selects(self, train: cfg.TrainConfig) -> bool:
        return train.phase == 2 and self.takes_path(train)

    def takes_path(self, train: cfg.TrainConfig) -> bool:
        """True when these settings ask for this way of fitting the head (`train.phase2_augment`)."""
        raise NotImplementedError

    def training_sampler(self, config: cfg.Config) -> str:
        return "none"

    def check_inputs(self, config, dataset_dir, init_run, class_map) -> None:
        if config.train.init_weights:
            raise UserError(f"{setting('init_weights')} is only used by phase 1 (phase 2 starts from "
                            f"{setting('init_run')}), got {config.train.init_weights} with phase 2")
        if init_run is None:
            raise UserError(f"phase 2 needs {setting('init_run')} RUN_DIR (the phase-1 run whose model it "
                            "fine-tunes), got none")
        if not RunFolder(init_run).model.is_file():
            raise UserError(f"{setting('init_run')} {init_run} is not a finished phase-1 run: {MODEL} missing")
        init_map = runs.read_class_map(init_run)
        if not init_map.same_classes(class_map):
            raise UserError(f"class map of {setting('init_run')} run {init_run} ({init_map.num_classes} classes) "
                            f"differs from the dataset's at {dataset_dir} ({class_map.num_classes} classes)")
        lineage = Lineage.read(init_run)
        if lineage.get(Lineage.PHASE) != 1:
            raise UserError(f"{setting('init_run')} {init_run} must be a phase-1 run, got a "
                            f"phase-{lineage.get('phase')} run")

    def head_description(self, config: cfg.Config) -> str:
        """What the head was fitted on (lineage `head_trained_on`)."""
        return self.head_trained_on

    def train(self, ctx: TrainContext) -> dict:
        from serengeti_tf.models.resnet import count_weights, freeze_backbone, load_model

        config = ctx.config
        counts = ds_reader.train_counts(ctx.dataset_dir)
        loss_counts = [int(n) for n in counts.values()]
        with ctx.strategy.scope():
            model = load_model(RunFolder(ctx.init_run).model, compile=False)
        if int(model.input_shape[1]) != config.model.input_size:
            raise UserError(f"model of {setting('init_run')} {ctx.init_run} takes {model.input_shape[1]}px images "
                            f"but its lineage.json says {config.model.input_size}px")
        freeze_backbone(model)
        trainable, frozen = count_weights(model, True), count_weights(model, False)
        ctx.on_event(events.Step(f"phase 2: {trainable:,} trainable weights (head only), {frozen:,} frozen; "
                                 f"original train distribution ({sum(loss_counts)} images/epoch)"))
        info = {"images_per_epoch": sum(loss_counts),
                "lineage": {"trainable_weights": trainable, "frozen_weights": frozen,
                            "fast_path": not config.train.phase2_augment,
                            "head_trained_on": self.head_description(config),
                            "images_per_epoch": sum(loss_counts)}}
        info.update(self.fit_head(ctx, model, loss_counts))
        return info

    def fit_head(self, ctx: TrainContext, model, loss_counts: list[int]) -> dict:
        """Fits the head of the frozen `model`; returns extra info for timings.json."""
        raise NotImplementedError


class Phase2Slow(Phase2):
    name = "phase2_slow"
    description = "phase 2, slow path: the head trained through the frozen backbone on augmented images"
    head_trained_on = ("images through the frozen backbone with fresh train-time augmentation every epoch "
                       "(slow path)")

    def takes_path(self, train: cfg.TrainConfig) -> bool:
        return bool(train.phase2_augment)

    def work(self, run_config, split_counts, epoch_images):
        return self._trained_work(run_config, split_counts, int(split_counts.get("train", 0)))

    def fit_head(self, ctx: TrainContext, model, loss_counts: list[int]) -> dict:
        """Frozen backbone, full forward pass every step (needed when phase 2 augments its images)."""
        from serengeti_tf.data import pipeline
        from serengeti_tf.models.resnet import freeze_backbone

        config = ctx.config
        original = cfg.SamplerConfig(**{**cfg.to_dict(config)["sampler"], "name": "none"})
        plan = sampling.sampling_plan(ds_reader.train_counts(ctx.dataset_dir), original)
        train_data, steps = pipeline.make_train_dataset(ctx.dataset_dir, plan, config,
                                                        augment=config.train.phase2_augment,
                                                        seed=pipeline.data_seed(config),
                                                        same_order_on_every_worker=distribution.needs_same_order(config))
        steps = fitting.capped_steps(steps, config)
        train_data = distribution.shard_by_data(train_data.repeat(), ctx.strategy)
        model = fitting.load_or_compile(fitting.checkpoint_path(ctx.paths, ctx.state), lambda: model,
                                        freeze_backbone, config.train, loss_counts, ctx.strategy)
        fitting.fit(model, train_data, steps, fitting.val_data(ctx.dataset_dir, config), config, ctx.paths,
                    ctx.state, save_best=fitting.save_full, save_last=fitting.save_full, on_event=ctx.on_event,
                    strategy=ctx.strategy)
        return {}


class Phase2Fast(Phase2):
    name = "phase2_fast"
    description = "phase 2, fast path: the head fitted on cached pooled features of the frozen backbone"

    def takes_path(self, train: cfg.TrainConfig) -> bool:
        return not train.phase2_augment

    def head_description(self, config: cfg.Config) -> str:
        return head_features_description(config.train.feature_views)

    def work(self, run_config, split_counts, epoch_images):
        return self._once_work(run_config, split_counts)

    def fit_head(self, ctx: TrainContext, model, loss_counts: list[int]) -> dict:
        """Head fitted on cached pooled features; returns the seconds spent on the feature pass."""
        from serengeti_tf.models.resnet import head_layer, head_model, save_model, set_head_weights

        config, paths = ctx.config, ctx.paths
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
        cache_root = (paths.resume_root or paths.root) / "checkpoints"

        def cache_file(split: str) -> Path:
            cached = cache_root / f"features-{split}.npz"
            return cached if cached.exists() else paths.checkpoints / f"features-{split}.npz"

        views = config.train.feature_views
        splits, seconds = split_features(model, ctx.dataset_dir, config, cache_file, ctx.on_event,
                                         ctx.init_digest, views)
        train_feats, train_labels = splits["train"]
        # An epoch is one image's worth of rows per image, whatever the number of cached views.
        steps = fitting.capped_steps(math.ceil(len(train_labels) / views / config.train.batch_size), config)
        train_data = feature_batches(train_feats, train_labels, config.train.batch_size,
                                     seed=fitting.data_seed(config))
        train_data = distribution.shard_by_data(train_data.repeat(), ctx.strategy)
        val_data = feature_batches(*splits["val"], batch_size=config.eval.batch_size, seed=None)
        if config.train.validation_steps:
            val_data = val_data.take(config.train.validation_steps)
        head = fitting.load_or_compile(fitting.checkpoint_path(paths, ctx.state), lambda: head_model(model),
                                       lambda m: None, config.train, loss_counts, ctx.strategy)

        def save_best(fitted_head, path: Path) -> None:
            # The best checkpoint is always a full model, whichever path trained the head.
            set_head_weights(model, head_layer(fitted_head).get_weights())
            save_model(model, path)

        fitting.fit(head, train_data, steps, val_data, config, paths, ctx.state, save_best=save_best,
                    save_last=lambda m, p: save_model(m, p), on_event=ctx.on_event, strategy=ctx.strategy)
        return {"feature_seconds": seconds}


class Method(Phase1):
    """A loss or class-weighting method: the baseline's phase 1 with the method's `train.*` settings."""

    name = "method"
    description = "an imbalance method changing the loss or class weights: phase 1 on the original distribution"

    def selects(self, train: cfg.TrainConfig) -> bool:
        return False  # a `train` command with these settings is phase 1

    def plan_for_sampler(self, config, seed, seed_dir, sampler, planned):
        return []

    def handles_method(self, method: str) -> bool:
        return not methods.head_only(method)

    def plan_for_method(self, config, seed, seed_dir, method, baseline):
        return PlannedRun(seed, "none", 1, seed_dir / method, method=method, recipe=self.name,
                          compared_with=self.compared_with(seed_dir / method, baseline))


class Rebalance(Recipe):
    """A head re-balancing method branched from the seed's baseline run (`training.rebalance_run`):
    no training, and the comparison with the baseline is paired (same backbone)."""

    name = "rebalance"
    description = "the baseline's model with its head re-balanced (no training)"
    branches_from_trained = True
    needs_baseline = True

    def handles_method(self, method: str) -> bool:
        return methods.head_only(method)

    def plan_for_method(self, config, seed, seed_dir, method, baseline):
        return PlannedRun(seed, "none", 1, seed_dir / method, method=method, trained_run=baseline,
                          recipe=self.name, compared_with=self.compared_with(seed_dir / method, baseline))

    def work(self, run_config, split_counts, epoch_images):
        return self._once_work(run_config, split_counts)


def register(recipe: Recipe) -> Recipe:
    """Registers `recipe` under its name (`choices.RECIPES`); returns it."""
    return RECIPES.register(recipe.name, recipe)


for _recipe in (Phase1(), Phase2Fast(), Phase2Slow(), Method(), Rebalance()):
    register(_recipe)


# ---------------------------------------------------------------------------------------------
# Which recipe, and the plan of a grid
# ---------------------------------------------------------------------------------------------


def all_recipes() -> list[Recipe]:
    """Every registered recipe, in registration order (the order the plan asks them)."""
    return [RECIPES.lookup(name) for name in RECIPES.names()]


def recipe_for(train: cfg.TrainConfig, branched: bool = False) -> Recipe:
    """The recipe a run with these settings is: a run branched from a trained one (`rebalance_run`),
    else the first registered recipe that `selects` them."""
    for recipe in all_recipes():
        if (recipe.branches_from_trained if branched else recipe.selects(train)):
            return recipe
    raise UserError(f"no recipe trains phase {train.phase}" + (" branched from a trained run" if branched else ""))


def method_recipe(method: str) -> Recipe:
    """The recipe that produces imbalance method `method`'s runs."""
    for recipe in all_recipes():
        if recipe.handles_method(method):
            return recipe
    raise UserError(f"no recipe produces imbalance method {method!r}")


def references(phase: int) -> tuple[str, ...]:
    """What an evaluated run of `phase` is compared with (the `references` of the recipe such a run
    is): what `reporting.comparisons` and `paired.comparisons` pair runs by, as the plan does."""
    return recipe_for(cfg.TrainConfig(phase=phase)).references


def plan_runs(config: cfg.Config, out_dir: str | Path) -> list[PlannedRun]:
    """The grid in execution order: per seed, per sampler, each recipe's runs (phase 1, then phase 2
    but not for `none`), then one run per imbalance method. A method that branches from the seed's
    baseline (`none` phase 1) gets it planned (first) even when `none` is not among the samplers."""
    method_recipes = [(method, method_recipe(method)) for method in config.experiment.methods]
    samplers = list(config.experiment.samplers)
    if any(recipe.needs_baseline for _, recipe in method_recipes) and "none" not in samplers:
        samplers.insert(0, "none")
    planned = []
    for seed in range(config.experiment.seeds):
        seed_dir = ExperimentFolder(Path(out_dir)).seed_dir(seed)
        seed_runs: list[PlannedRun] = []
        for sampler in samplers:
            sampler_runs: list[PlannedRun] = []
            for recipe in all_recipes():
                sampler_runs += recipe.plan_for_sampler(config, seed, seed_dir, sampler, sampler_runs)
            seed_runs += sampler_runs
        baseline = next((r.run_dir for r in seed_runs if r.sampler == "none" and r.recipe == Phase1.name), None)
        for method, recipe in method_recipes:
            seed_runs.append(recipe.plan_for_method(config, seed, seed_dir, method, baseline))
        in_grid = {r.run_dir for r in seed_runs}  # a reference outside the grid is no comparison of it
        planned += [dataclasses.replace(r, compared_with=tuple(c for c in r.compared_with if c[1] in in_grid))
                    for r in seed_runs]
    return planned


def run_config(config: cfg.Config, run: PlannedRun) -> cfg.Config:
    """The training config of one run: the experiment's, with its sampler, phase and seed (and
    the method's train.* settings for a method run)."""
    overrides = methods.method_overrides(run.method) if run.method else {}
    train = dataclasses.replace(config.train, phase=run.phase, seed=config.train.seed + run.seed, **overrides)
    if run.phase == 2 and config.experiment.phase2_epochs:
        train = dataclasses.replace(train, epochs=config.experiment.phase2_epochs)
    if run.phase == 2:  # phase 2 starts from its phase-1 run; train.init_weights is phase 1's start
        train = dataclasses.replace(train, init_weights=None)
    sampler = dataclasses.replace(config.sampler, name=run.sampler if run.phase == 1 else "none",
                                  seed=None if config.sampler.seed is None else config.sampler.seed + run.seed)
    return cfg.validate(dataclasses.replace(config, train=train, sampler=sampler))


def grid_work(config: cfg.Config, planned: list[PlannedRun], train_counts: dict[str, int],
              counts: dict[str, int]) -> list[RunWork]:
    """`work.RunWork` of every planned run (image passes it will cost), from the train counts per
    class and the images per split."""
    work = []
    for run in planned:
        config_of_run = run_config(config, run)
        epoch_images = int(sampling.sampling_plan(train_counts, config_of_run.sampler)["target"].sum())
        work.append(RECIPES.lookup(run.recipe).work(config_of_run, counts, epoch_images))
    return work
