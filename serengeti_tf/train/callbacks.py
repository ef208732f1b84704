"""The per-epoch bookkeeping of a training run, as one Keras callback.

After every epoch `EpochRecorder`:
1. evaluates the model on the WHOLE validation split (val loss, accuracy, macro F1) in one pass,
2. keeps the best model by val macro F1 over all classes (`metrics.SELECTION_METRIC`;
   `checkpoints/best-epoch-NNN.keras`),
3. checkpoints model + optimizer state (`checkpoints/epoch-NNN.keras`) and THEN the resume state
   (`checkpoints/state.json`: epochs done, best score, early-stopping counter, metric history),
   so a kill at any moment leaves a state that points at a complete checkpoint,
4. rewrites `metrics.csv` from that history, logs TensorBoard scalars, prints one summary line,
5. stops training on early stopping (patience on val macro F1) or on a NaN/inf loss (the epoch is
   recorded in `failed_epoch`, nothing of it is checkpointed).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from serengeti_tf import events
from serengeti_tf.evaluate import metrics
from serengeti_tf.io_utils import record_owned
from serengeti_tf.models.inference import inference_function, predict_dataset
from serengeti_tf.train import runs


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Cross-entropy, accuracy and macro F1 of logits against labels.

    `val_macro_f1` is `metrics.macro_f1` over ALL classes of the logits (the headline evaluation
    score), so an epoch that predicts a class absent from val is scored like any other.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return {"val_loss": float("nan"), "val_accuracy": float("nan"), "val_macro_f1": float("nan")}
    loss = -log_softmax(logits)[np.arange(len(labels)), labels].mean()
    cm = metrics.confusion_counts(labels, logits.argmax(axis=1), logits.shape[1])
    return {"val_loss": float(loss), "val_accuracy": metrics.accuracy(cm), "val_macro_f1": metrics.macro_f1(cm)}


def tensorboard_writer(folder) -> "tf.summary.SummaryWriter":
    """The run's TensorBoard event writer. `tf.summary.scalar` is implemented by the `tensorboard`
    package, which TensorFlow >= 2.21 no longer installs (the cpu/gpu/tensorflow extras do): without
    it, training stops before its first epoch with one line instead of a traceback after it."""
    import importlib.util

    from serengeti_tf.errors import UserError

    if importlib.util.find_spec("tensorboard") is None:
        raise UserError("TensorBoard logging needs the tensorboard package: pip install tensorboard "
                        "(the cpu, gpu and tensorflow extras include it)")
    return tf.summary.create_file_writer(str(folder))


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


class EpochRecorder(keras.callbacks.Callback):
    """Validation metrics, best/last checkpoints, resume state, metrics.csv, early stopping, NaN stop.

    `save_best(model, path)` writes the best model (a phase-2 fast path turns its head-only model
    into the full model there); `save_last(model, path)` writes the resumable checkpoint.
    """

    def __init__(self, paths: runs.RunPaths, state: runs.RunState, val_data: tf.data.Dataset,
                 total_epochs: int, patience: int, save_best: Callable, save_last: Callable,
                 on_event: events.EventSink = events.ignore, write_summaries: bool = True):
        super().__init__()
        self.paths = paths
        self.state = state
        self.val_data = val_data
        self.total_epochs = total_epochs
        self.patience = patience
        self.save_best = save_best
        self.save_last = save_last
        self.on_event = on_event
        self.failed_epoch: Optional[int] = None
        self.failed_value: Optional[float] = None
        self._epoch_start = 0.0
        self._current_epoch = 0
        self._forward = None
        self._writer = None
        if write_summaries:
            self._writer = tensorboard_writer(paths.tensorboard)
            record_owned(paths.tensorboard, folder=True)  # event files are not written through io_utils

    # -- NaN/inf ---------------------------------------------------------------------------
    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not _finite(loss) and self.failed_epoch is None:
            self.failed_epoch = self._current_epoch + 1
            self.failed_value = float(loss)
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch
        self._epoch_start = time.perf_counter()

    # -- the per-epoch record ----------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.failed_epoch is None and not _finite(logs.get("loss", 0.0)):
            self.failed_epoch, self.failed_value = epoch + 1, float(logs["loss"])
        if self.failed_epoch is not None:
            self.model.stop_training = True
            return  # nothing of a diverged epoch is kept
        if self._forward is None:
            self._forward = inference_function(self.model)
        # On every worker alike (locally): differing early-stopping decisions would deadlock.
        logits, labels = predict_dataset(self.model, self.val_data, self._forward)
        row = {"epoch": epoch + 1, "loss": float(logs.get("loss", float("nan"))),
               "accuracy": float(logs.get("accuracy", float("nan"))),
               **classification_metrics(logits, labels),
               "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
               "seconds": round(time.perf_counter() - self._epoch_start, 3)}
        state = self.state
        score = row["val_macro_f1"]
        improved = state.best_score is None or (math.isfinite(score) and score > state.best_score)
        # Files first, then the state that names them, then the files it no longer names: a kill
        # at any point leaves a state whose checkpoints are complete.
        if improved:
            best_name = f"best-epoch-{epoch + 1:03d}.keras"
            self.save_best(self.model, self.paths.checkpoints / best_name)
            state.best_score, state.best_epoch, state.wait = score, epoch + 1, 0
            state.best_checkpoint = best_name
        else:
            state.wait += 1
        stop = self.patience > 0 and state.wait >= self.patience and epoch + 1 < self.total_epochs
        name = f"epoch-{epoch + 1:03d}.keras"
        self.save_last(self.model, self.paths.checkpoints / name)
        state.checkpoint = name
        state.history.append(row)
        state.epochs_done = epoch + 1
        state.stopped_early = stop
        runs.write_state(self.paths, state)
        runs.tidy_checkpoints(self.paths, state)
        runs.write_metrics(self.paths, state.history)
        self._summaries(row)
        self.on_event(self._epoch_end(row, stop))
        if stop:
            self.model.stop_training = True

    def _summaries(self, row: dict) -> None:
        if self._writer is None:
            return
        with self._writer.as_default(step=row["epoch"]):
            for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1", "learning_rate"):
                tf.summary.scalar(key, float(row[key]))
        self._writer.flush()

    def _epoch_end(self, row: dict, stop: bool) -> events.EpochEnd:
        done = [r["seconds"] for r in self.state.history]
        remaining = (self.total_epochs - row["epoch"]) * (sum(done) / len(done))
        return events.EpochEnd(row["epoch"], self.total_epochs, dict(row), self.state.best_score,
                               self.state.best_epoch, remaining, stopped_early=stop)
