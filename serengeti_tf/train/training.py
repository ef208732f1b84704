"""Phase-1 and phase-2 training runs (the `train` job).

Phase 1 trains ResNet-18 from scratch on the sampler's re-balanced data (`config.sampler`).
Phase 2 loads a phase-1 run's model, freezes everything but the head (`model.freeze_backbone`)
and retrains the head on the ORIGINAL train distribution with a fresh optimizer.

Phase-2 fast path (default: `train.phase2_augment` false): the pooled features of the train and
val splits are computed once (`features.py` caches them in `checkpoints/`) and only the Dense
head is fitted on them, from the same initial weights with the same loss and optimizer, and
written back into the full model for `model.keras`. With `train.feature_views: 1` (default) the
train features are of the un-augmented centre crop: the head equals one trained through the frozen
model on un-augmented images in the same batch order (a test checks this), NOT the slow path with
`phase2_augment: true`, which sees fresh augmentation every epoch. `feature_views: k > 1` caches k
random augmented views per image instead (closer to Kang et al.'s augmented classifier retraining,
still a fixed set of views). `lineage.json` says which (`head_trained_on`).

How each way of producing a model checks its inputs, prepares its model and fits is its recipe's
(`recipes.py`, through the one load-or-compile-then-fit path of `fitting.py`); this module is the job
around a recipe. Both phases share the run folder, logging, checkpointing, early stopping and resume logic
(`runs.py`, `callbacks.py`); see `runs.py` for the folder layout. After training, the configured
head re-balancing (`train.head_rebalancing`, `rebalancing.py`) runs on cached features; this
module drives it, also for a run branched from an already trained one (`rebalance_run`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from serengeti_tf import config as cfg
from serengeti_tf import events
from serengeti_tf.data import dataset as ds_reader
from serengeti_tf.data import sampling
from serengeti_tf.errors import UserError, setting
from serengeti_tf.io_utils import atomic_path, file_digest, write_csv, write_json
from serengeti_tf.models.pretrained import load_backbone_weights
from serengeti_tf.run_folder import MODEL, REBALANCING, Lineage, RunFolder
from serengeti_tf.train import distribution, fitting, recipes, runs
from serengeti_tf.train.features import head_features_description, split_features
from serengeti_tf.train.head_choices import fits_on_train_features

# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

def _check_inputs(config: cfg.Config, dataset_dir: Path, init_run: Optional[Path], recipe: recipes.Recipe):
    """Validates everything a run needs BEFORE any folder is claimed (the recipe checks its own
    inputs); returns the dataset's `ClassMap`."""
    if not dataset_dir.is_dir():
        raise UserError(f"prepared dataset folder not found: {dataset_dir} (run `serengeti-tf prepare` first)")
    class_map = ds_reader.class_map(dataset_dir)
    ds_reader.check_shards(dataset_dir)  # a missing val shard fails now, not after a whole epoch
    ds_reader.counts(dataset_dir)
    recipe.check_inputs(config, dataset_dir, init_run, class_map)
    return class_map


def train(config: cfg.Config, dataset_dir: str | Path, run_dir: str | Path,
          init_run: str | Path | None = None, overwrite: bool = False,
          on_event: events.EventSink = events.ignore, recipe: Optional[recipes.Recipe] = None) -> Path:
    """Runs (or resumes, or finds finished) one training run of `recipe` (default: the recipe the
    config's `train.phase` selects, `recipes.recipe_for`); returns the run folder.

    Raises UserError on bad input, on a refused overwrite, and when the loss becomes NaN/inf
    (the last good epoch's checkpoint is kept, so the run can be inspected or resumed).
    """
    config = cfg.from_dict(cfg.to_dict(config))  # a validated copy: the caller's object stays as it was
    dataset_dir, run_dir = Path(dataset_dir), Path(run_dir)
    init_run = Path(init_run) if init_run else None
    recipe = recipe or recipes.recipe_for(config.train)
    class_map = _check_inputs(config, dataset_dir, init_run, recipe)
    runs.run_job(run_dir, {setting("dataset_dir"): dataset_dir, setting("init_run"): init_run,
                           setting("init_weights"): config.train.init_weights}).check_inputs()
    init_digest = None
    if init_run is not None:
        _adopt_input_size(config, init_run, on_event)
        init_digest = file_digest(RunFolder(init_run).model)
        runs.check_init_model_unchanged(run_dir, init_run, init_digest, overwrite)
    started = time.perf_counter()

    # The strategy comes first: it may configure devices, which TF allows only before other TF work.
    strategy = distribution.make_strategy(config.train.strategy)
    chief = distribution.is_chief(strategy)
    paths, scratch = _run_paths(run_dir, chief)
    # Pretrained weights are loaded and checked layer by layer before the run folder is claimed.
    pretrained = _pretrained_model(config, int(class_map.num_classes), strategy) if config.train.init_weights else None
    held = contextlib.ExitStack()
    try:
        held.enter_context(runs.run_job(paths.root).lock())  # one process per run folder
        runs.claim_run_dir(paths.root, on_event, config, dataset_dir, init_run, overwrite)
        state = runs.resume_state(paths, on_event)
        if state.finished:  # a worker reads the chief's state: it must not train alone
            if chief and rebalancing_pending(config, paths):  # killed between training and re-balancing
                on_event(events.Step(f"{run_dir}: training finished; re-balancing the head "
                                     f"({config.train.head_rebalancing})"))
                _rebalance(config, dataset_dir, paths, state, on_event)
                return run_dir
            on_event(events.Step(f"{run_dir} already holds this finished run ({state.epochs_done} epochs); "
                                 f"nothing to do (pass {setting('overwrite')} to train it again)"))
            return run_dir
        if state.epochs_done:
            on_event(events.Step(f"resuming {run_dir} after epoch {state.epochs_done}/{config.train.epochs}"))
            if chief:
                runs.tidy_checkpoints(paths, state)
        if chief:  # written first so an interrupted run is still described; rewritten at the end
            runs.write_run_files(paths, config, _lineage(config, recipe, dataset_dir, init_run, None, strategy,
                                                         {}, init_digest), class_map)
        import keras

        keras.utils.set_random_seed(config.train.seed)
        with distribution.precision(config.train.mixed_precision) as policy:
            info = recipe.train(recipes.TrainContext(config, dataset_dir, init_run, paths, state, strategy,
                                                     on_event, pretrained, init_digest))
        if chief:
            lineage = _lineage(config, recipe, dataset_dir, init_run, policy, strategy, info, init_digest)
            runs.write_run_files(paths, config, lineage, class_map)
            _finish(paths, state, info, started, on_event)
            if rebalancing_pending(config, paths):
                _rebalance(config, dataset_dir, paths, state, on_event)
        return run_dir
    finally:
        held.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _pretrained_model(config: cfg.Config, num_classes: int, strategy) -> tuple:
    """A fresh model (new head) with the backbone of `train.init_weights`, and what lineage records."""
    import keras

    from serengeti_tf.models.resnet import build_model

    keras.utils.set_random_seed(config.train.seed)
    with distribution.precision(config.train.mixed_precision), strategy.scope():
        model = build_model(config.model, num_classes,
                            synchronized_bn=strategy.num_replicas_in_sync > 1)
        info = load_backbone_weights(model, config.train.init_weights)
    return model, info


def _adopt_input_size(config: cfg.Config, init_run: Path, on_event) -> None:
    """Phase 2 runs at the phase-1 model's input size, whatever the config's default says."""
    size = Lineage.read(init_run).input_size
    if isinstance(size, int) and size != config.model.input_size:
        on_event(events.Step(f"phase 2 uses the phase-1 model's input size {size}px "
                             f"(config said {config.model.input_size})"))
        config.model.input_size = size


def _run_paths(run_dir: Path, chief: bool) -> tuple[runs.RunPaths, Optional[Path]]:
    """The chief writes `run_dir`; another worker writes a scratch folder but resumes from the chief's."""
    if chief:
        return runs.RunPaths(run_dir), None
    scratch = Path(tempfile.mkdtemp(prefix=f"serengeti-tf-{distribution.worker_label()}-"))
    return runs.RunPaths(scratch / "run", resume_root=run_dir), scratch


def _lineage(config, recipe, dataset_dir, init_run, policy, strategy, info, init_digest=None) -> dict:
    lineage = {"phase": config.train.phase, "sampler": config.sampler.name,
               "training_sampler": recipe.training_sampler(config),
               "dataset_dir": str(dataset_dir.resolve()),
               "init_run": str(init_run.resolve()) if init_run else None,
               "init_model_sha256": init_digest,
               "seed": config.train.seed, "data_seed": fitting.data_seed(config), "model": config.model.name,
               "input_size": config.model.input_size, "dtype_policy": policy,
               "strategy": config.train.strategy, "replicas": int(strategy.num_replicas_in_sync),
               "global_batch_size": config.train.batch_size}
    if init_run:
        parent = Lineage.read(init_run)
        lineage["sampler"] = parent.get(Lineage.SAMPLER, config.sampler.name)
        lineage["init_run_lineage"] = parent.as_dict()
    lineage.update(info.get("lineage", {}))
    if recipe.label_suffix:  # a recipe whose runs are a report group of their own is named (reports label it)
        lineage["recipe"] = recipe.name
    return lineage


def _finish(paths: runs.RunPaths, state: runs.RunState, info: dict, started: float, on_event) -> None:
    """model.keras = best checkpoint; timings; the run is marked finished last."""
    best = paths.checkpoints / state.best_checkpoint
    if not state.best_checkpoint or not best.is_file():
        raise UserError(f"no finished epoch with a best checkpoint in {paths.checkpoints}; nothing to save")
    with atomic_path(paths.model) as tmp:
        shutil.copyfile(best, tmp)
    epoch_seconds = [r["seconds"] for r in state.history]
    write_json(paths.folder.timings, {
        "epochs_run": state.epochs_done, "stopped_early": state.stopped_early,
        "best_epoch": state.best_epoch, "best_val_macro_f1": state.best_score,
        "epoch_seconds": epoch_seconds, "train_seconds": round(sum(epoch_seconds), 3),
        "feature_seconds": round(info.get("feature_seconds", 0.0), 3),
        "images_per_epoch": info.get("images_per_epoch"),
        "this_session_seconds": round(time.perf_counter() - started, 3)})
    state.finished = True
    runs.write_state(paths, state)
    on_event(events.Step(f"finished: best val macro F1 {state.best_score:.4f} at epoch {state.best_epoch}; "
                         f"model at {paths.model}"))


# ---------------------------------------------------------------------------------------------
# Head re-balancing after training (`train.head_rebalancing`, `rebalancing.py`)
# ---------------------------------------------------------------------------------------------

REBALANCING_JSON = REBALANCING
REBALANCING_SWEEP = "rebalancing_sweep.csv"


def rebalancing_pending(config: cfg.Config, paths: runs.RunPaths) -> bool:
    """True when the run asks for head re-balancing and `rebalancing.json` (written last) is missing."""
    return config.train.head_rebalancing != "none" and not (paths.root / REBALANCING_JSON).is_file()


def rebalancing_features(config: cfg.Config, dataset_dir: Path, model, paths: runs.RunPaths,
                         on_event, source: Optional[str] = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pooled features of the train split (stored order, no augmentation) and the val split.

    Phase 2's fast path already cached exactly these (its backbone is frozen, so the final model's
    backbone is the one that computed them); otherwise they are computed once and cached in
    `checkpoints/rebalance-features-<split>.npz` so an interrupted re-balancing resumes cheaply.
    The caches are stamped with the backbone's source: the phase-1 model's sha256 for phase 2
    (frozen backbone), the best checkpoint's for phase 1, or the given `source` (a run branched
    from another run's model.keras: that file's sha256).
    """
    frozen_from_init = recipes.recipe_for(config.train).backbone_frozen_from_init

    def cache_file(split: str) -> Path:
        phase2_cache = paths.checkpoints / f"features-{split}.npz"
        if frozen_from_init and phase2_cache.is_file():
            return phase2_cache
        return paths.checkpoints / f"rebalance-features-{split}.npz"

    if source is None and frozen_from_init:
        source = Lineage.read(paths.root).get(Lineage.INIT_MODEL_SHA256) or ""
    elif source is None:
        source = file_digest(paths.checkpoints / runs.read_state(paths).best_checkpoint)
    return split_features(model, dataset_dir, config, cache_file, on_event, source, rebalancing_views(config))[0]


def rebalancing_views(config: cfg.Config) -> int:
    """Train views behind the re-balancing features: `train.feature_views` for cRT (it fits a head on
    them), 1 otherwise (post-hoc adjustment and tau-norm only score the val split)."""
    return config.train.feature_views if fits_on_train_features(config.train.head_rebalancing) else 1


def head_prior_counts(config: cfg.Config, dataset_dir: Path) -> tuple[list[int], str]:
    """Per-class counts of the distribution the head was last trained on, and where they come from.

    Post-hoc logit adjustment removes this prior: after a phase-1 run on a sampler the head learnt
    the plan's targets (ROS/RUS, ...), not the original counts; after phase 2 (or for the baseline,
    whose plan is the original distribution) it is the original train counts. The same counts feed
    the phase's loss (`loss_counts`), so losses and post-hoc adjustment agree on the prior.
    """
    counts = ds_reader.train_counts(dataset_dir)
    if recipes.recipe_for(config.train).training_sampler(config) != "none":
        plan = sampling.sampling_plan(counts, config.sampler)
        return [int(n) for n in plan["target"]], f"phase-1 plan targets (sampler {config.sampler.name})"
    return [int(n) for n in counts.values()], "original train counts"


def _rebalance(config: cfg.Config, dataset_dir: Path, paths: runs.RunPaths, state: runs.RunState,
               on_event) -> dict:
    """Re-balances the head of the best model; writes the sweep CSV, model.keras, rebalancing.json.

    Always starts from the best CHECKPOINT (never model.keras), so a rerun after a kill anywhere
    in here re-applies the method once to the trained model instead of twice. Only the head's
    kernel and bias change (cRT fits a new head on frozen features; the backbone is untouched).
    """
    best = paths.checkpoints / state.best_checkpoint
    if not state.best_checkpoint or not best.is_file():
        raise UserError(f"head re-balancing needs the best checkpoint, but {best} is missing; "
                        f"rerun with {setting('overwrite')} to train again")
    return _rebalance_model(config, dataset_dir, best, paths, {"source_checkpoint": state.best_checkpoint},
                            on_event)


def _rebalance_model(config: cfg.Config, dataset_dir: Path, source: Path, paths: runs.RunPaths,
                     provenance: dict, on_event, trained_config: Optional[cfg.Config] = None) -> dict:
    """Loads the trained model at `source`, re-balances its head into `paths.model`; writes the sweep
    CSV and, last, rebalancing.json (`provenance` says where the trained model came from).

    `trained_config` is the config the model was trained with (default `config`): its phase and
    sampler give the prior counts, its loss and class weighting how much of that prior the logits
    still carry (`rebalancing.prior_left_by_loss`, so post-hoc adjustment never removes it twice)."""
    from serengeti_tf.models.resnet import load_model, save_model
    from serengeti_tf.train import rebalancing

    start = time.perf_counter()
    model = load_model(source, compile=False)
    feats = rebalancing_features(config, dataset_dir, model, paths, on_event,
                                 source=provenance.get("source_model_sha256"))
    train_counts = [int(n) for n in ds_reader.train_counts(dataset_dir).values()]
    trained_config = trained_config or config
    prior_counts, prior_source = head_prior_counts(trained_config, dataset_dir)
    head_prior = rebalancing.prior_left_by_loss(prior_counts, trained_config.train)
    views, train_config = rebalancing_views(config), config.train
    if views > 1 and train_config.crt_steps_per_epoch is None:
        # One epoch = as many rows as there are train images, not N * views.
        train_config = dataclasses.replace(
            train_config, crt_steps_per_epoch=max(1, math.ceil(sum(train_counts) / train_config.batch_size)))
    summary, sweep = rebalancing.rebalance_head(
        model, train_config, head_prior, *feats["val"], train_features=feats["train"][0],
        train_labels=feats["train"][1], verbose=0)
    if sweep is not None:
        write_csv(paths.root / REBALANCING_SWEEP, sweep)
    save_model(model, paths.model)
    summary.update({"train_counts": train_counts, "prior_counts": prior_counts, "prior": prior_source,
                    "prior_left": [round(float(v), 8) for v in head_prior],
                    "prior_left_source": rebalancing.prior_left_description(trained_config.train),
                    **provenance,
                    "crt_features": (head_features_description(views)
                                     if fits_on_train_features(config.train.head_rebalancing) else None),
                    "features_cached": [str(p.name) for p in sorted(paths.checkpoints.glob("*features-*.npz"))],
                    "seconds": round(time.perf_counter() - start, 3)})
    write_json(paths.root / REBALANCING_JSON, summary)  # last: marks the re-balancing done
    before, after = summary["val_before"].get("macro_f1"), summary["val_after"].get("macro_f1")
    on_event(events.Step(f"head re-balancing {summary['method']}"
                         + (f" (tau {summary['tau']})" if summary.get("tau") is not None else "")
                         + f": val macro F1 {before:.4f} -> {after:.4f}; model at {paths.model}"))
    return summary


def rebalance_run(config: cfg.Config, dataset_dir: str | Path, run_dir: str | Path, trained_run: str | Path,
                  on_event: events.EventSink = events.ignore) -> Path:
    """A head re-balancing run that branches from an already trained run instead of training its own.

    `config.train.head_rebalancing` is applied to `trained_run/model.keras` (a finished run without
    re-balancing of its own), and the result is written as a complete run folder at `run_dir`
    (config, lineage naming the trained run and its model's sha256, model.keras, rebalancing.json).
    The backbone is the trained run's, so comparing the two is paired (same backbone, same seed);
    `experiment` uses this for `posthoc_la`, `tau_norm` and `crt` on each seed's baseline run.
    A rerun finds the finished run; an interrupted one resumes from the cached features.
    """
    config = cfg.from_dict(cfg.to_dict(config))
    dataset_dir, run_dir, trained_run = Path(dataset_dir), Path(run_dir), Path(trained_run)
    if config.train.head_rebalancing == "none":
        raise UserError("rebalance_run needs train.head_rebalancing (posthoc_logit_adjustment, tau_norm or crt), "
                        "got none")
    class_map = _check_inputs(config, dataset_dir, None, recipes.recipe_for(config.train))
    trained = RunFolder(trained_run)
    if not trained.model.is_file():
        raise UserError(f"{trained_run} is not a finished training run: {MODEL} missing")
    if (trained_run / REBALANCING_JSON).is_file():
        raise UserError(f"{trained_run} already re-balanced its head; branch from a run without head re-balancing")
    if not runs.read_class_map(trained_run).same_classes(class_map):
        raise UserError(f"class map of {trained_run} differs from the dataset's at {dataset_dir}")
    _adopt_input_size(config, trained_run, on_event)
    # One process per run folder.
    with runs.run_job(run_dir, {setting("dataset_dir"): dataset_dir, "trained run": trained_run}):
        paths = runs.RunPaths(run_dir)
        runs.claim_run_dir(run_dir, on_event, config, dataset_dir, trained_run, overwrite=False)
        digest = file_digest(trained.model)
        if (run_dir / REBALANCING_JSON).is_file():
            done_from = runs.read_run_json(run_dir, REBALANCING_JSON).get("source_model_sha256")
            if done_from != digest:
                raise UserError(f"{run_dir} re-balanced an earlier model of {trained_run} (its {MODEL} changed "
                                f"since); delete {run_dir} to re-balance the new one")
            on_event(events.Step(f"{run_dir} already holds this re-balanced run; nothing to do"))
            return run_dir
        parent = Lineage.read(trained_run)
        lineage = {**parent, "init_run": None, "rebalanced_run": str(trained_run.resolve()),
                   "rebalanced_model_sha256": digest, "head_rebalancing": config.train.head_rebalancing,
                   "trained_epochs": 0}
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
        runs.write_run_files(paths, config, lineage, class_map)
        on_event(events.Step(f"{config.train.head_rebalancing}: re-balancing the head of {trained_run} (no training)"))
        _rebalance_model(config, dataset_dir, trained.model, paths,
                         {"source_model": str(trained.model), "source_model_sha256": digest}, on_event,
                         trained_config=(cfg.load_saved(trained.config) if trained.config.is_file() else None))
        return run_dir
