"""Running a model over a dataset: the one loop behind validation, evaluation and feature caching.

`predict_dataset` walks `(inputs, labels)` batches in order, in inference mode, locally (never
through a tf.distribute strategy: every worker gets the same numbers, hence the same
early-stopping decision). Repeated or long passes hand it `inference_function(model)`, a compiled
forward traced once; otherwise the model is called eagerly.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import numpy as np


def inference_function(model):
    """A compiled forward pass in inference mode; build it once per model and reuse it."""
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)


def predict_dataset(model, dataset, forward: Optional[Callable] = None,
                    progress: Optional[Callable[[Iterable], Iterable]] = None) -> tuple[np.ndarray, np.ndarray]:
    """Outputs (float32 `[N, D]`) and labels (int64 `[N]`) of `model` over every `(x, y)` batch.

    `forward`: `inference_function(model)` for the compiled path (else `model(x, training=False)`
    eagerly). `progress` wraps the batch iterator (e.g. a tqdm bar). An empty dataset gives
    `[0, D]` outputs, D the model's output width; callers that need images say so themselves.
    """
    forward = forward or (lambda x: model(x, training=False))
    batches = progress(dataset) if progress is not None else dataset
    outputs, labels = [], []
    for x, y in batches:
        # np.asarray keeps a mixed-precision float16/bfloat16 output exact; float32 holds it losslessly.
        outputs.append(np.asarray(forward(x)).astype(np.float32, copy=False))
        labels.append(np.asarray(y).reshape(-1))
    if not outputs:
        return np.zeros((0, model.output_shape[-1]), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(outputs), np.concatenate(labels).astype(np.int64)
