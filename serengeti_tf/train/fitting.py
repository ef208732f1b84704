"""The one "load or compile, then fit" path every training recipe shares (`recipes.py`).

    compile_model(model, ...)       the run's loss, accuracy metric, optimizer (fresh unless given), XLA flag
    load_or_compile(...)            a resumed run reloads its last checkpoint (with its optimizer state), a
                                    fresh one builds its model; both get the recipe's freezing, then compile
    fit(model, ...)                 model.fit over the epochs still to train, with the epoch recorder
                                    (checkpoints, early stopping, NaN/inf stop)

Keras is imported inside the functions, so the recipes (a registry owner) import without it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional

from serengeti_tf import config as cfg
from serengeti_tf.errors import UserError, setting
from serengeti_tf.train import distribution, optimizer_choices, runs


def make_optimizer(train_config: cfg.TrainConfig):
    """A fresh optimizer of `train.optimizer` (`optimizer_choices.make_optimizer`)."""
    return optimizer_choices.make_optimizer(train_config)


def make_loss(train_config: cfg.TrainConfig, loss_counts: list[int]):
    """The registered loss of `train.loss` (`losses.make_loss`): by default sparse categorical
    cross-entropy on logits (== categorical CE on one-hot labels)."""
    from serengeti_tf.train import losses

    return losses.make_loss(train_config, loss_counts)


def compile_model(model, train_config: cfg.TrainConfig, loss_counts: list[int], optimizer=None):
    """Compiles with the run's loss, accuracy metric, optimizer (fresh unless given) and XLA flag."""
    import keras

    model.compile(optimizer=optimizer or make_optimizer(train_config),
                  loss=make_loss(train_config, loss_counts),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  jit_compile=bool(train_config.xla))
    return model


def checkpoint_path(paths: runs.RunPaths, state: runs.RunState) -> Optional[Path]:
    """The checkpoint a resumed run continues from (a worker reads the chief's), or None for a fresh run."""
    if not state.checkpoint:
        return None
    return (paths.resume_root or paths.root) / "checkpoints" / state.checkpoint


def load_or_compile(checkpoint: Optional[Path], fresh: Callable[[], object], prepare: Callable[[object], object],
                    train_config: cfg.TrainConfig, loss_counts: list[int], strategy):
    """The model to fit, compiled inside the strategy's scope.

    From `checkpoint` (a resumed run) the model is reloaded and keeps its optimizer state; otherwise
    `fresh()` builds it with a fresh optimizer. `prepare(model)` (the recipe's freezing) runs on both,
    before compiling, because `trainable` changes take effect at compile time.
    """
    with strategy.scope():
        if checkpoint is not None:
            model = load_compiled(checkpoint)
            prepare(model)
            return compile_model(model, train_config, loss_counts, optimizer=model.optimizer)
        model = fresh()
        prepare(model)
        return compile_model(model, train_config, loss_counts)


def load_compiled(path: Path):
    """A compiled checkpoint: its loss and optimizer are this package's Keras classes, registered
    when `losses` and `optimizers` are imported, so both are imported before Keras reads it."""
    from serengeti_tf.models.resnet import load_model
    from serengeti_tf.train import losses, optimizers  # noqa: F401  (register their Keras classes)

    return load_model(path, compile=True)


def _verbosity() -> int:
    # Keras' per-epoch progress bar (with ETA) only on a terminal; the one-line summary always.
    return 1 if sys.stdout.isatty() else 0


def fit(model, train_data, steps: int, val_data, config: cfg.Config, paths: runs.RunPaths,
        state: runs.RunState, save_best: Callable, save_last: Callable, on_event, strategy) -> None:
    """model.fit over the remaining epochs with the recorder; raises UserError on NaN/inf loss."""
    from serengeti_tf.train.callbacks import EpochRecorder

    distribution.patch_for_multi_worker(model, strategy)
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    recorder = EpochRecorder(paths, state, val_data, config.train.epochs,
                             config.train.early_stopping_patience, save_best, save_last, on_event)
    if state.stopped_early or state.epochs_done >= config.train.epochs:
        return  # killed after the last epoch's state was written: nothing left to train
    model.fit(train_data, epochs=config.train.epochs, initial_epoch=state.epochs_done,
              steps_per_epoch=steps, callbacks=[recorder], verbose=_verbosity(), shuffle=False)
    if recorder.failed_epoch is not None:
        kept = (f"the last good checkpoint (epoch {state.epochs_done}) is kept in {paths.checkpoints}"
                if state.epochs_done else "no epoch finished, so no checkpoint was kept")
        raise UserError(f"training stopped: loss became {recorder.failed_value} in epoch {recorder.failed_epoch}; "
                        f"{kept}; try a lower {setting('learning_rate')} or {setting('overrides')} "
                        "train.mixed_precision=false")


def capped_steps(steps: int, config: cfg.Config) -> int:
    """Steps per epoch, at most `train.steps_per_epoch` when set, at least 1."""
    cap = config.train.steps_per_epoch
    return max(1, min(steps, cap) if cap else steps)


def val_data(dataset_dir: Path, config: cfg.Config):
    """The val split as the recorder scores it after each epoch (at most `train.validation_steps` batches)."""
    from serengeti_tf.data import pipeline

    data = pipeline.make_eval_dataset(dataset_dir, "val", config, batch_size=config.eval.batch_size)
    return data.take(config.train.validation_steps) if config.train.validation_steps else data


def save_full(model, path: Path) -> None:
    from serengeti_tf.models.resnet import save_model

    save_model(model, path)


def data_seed(config: cfg.Config) -> int:
    from serengeti_tf.data import pipeline

    return pipeline.data_seed(config)
