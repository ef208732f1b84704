"""Running a model over a dataset: the one loop behind validation, evaluation and feature caching.

`predict_dataset` walks `(inputs, labels)` batches in order, in inference mode, locally (never
through a tf.distribute strategy: every worker gets the same numbers, hence the same
early-stopping decision). Repeated or long passes hand it `inference_function(model)`, a compiled
forward traced once; otherwise the model is called eagerly.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable, Optional

import numpy as np


def inference_function(model) -> Callable:
    """A compiled forward pass in inference mode; build it once per model and reuse it.

    Traced once, on the first batch, for any batch size (an input signature with an unknown batch
    dimension): the smaller last batch of a pass does not retrace it. Each model's function is its
    own Python callable (a `functools.partial`, not a lambda): TensorFlow's retracing warning counts
    traces per Python code object, so with a shared lambda the one legitimate trace of every new
    model (phase 2 traces a feature extractor and a head in a row) read as retracing of one function.
    """
    compiled: dict[str, Callable] = {}

    def forward(x):
        if "fn" not in compiled:
            import tensorflow as tf

            spec = tf.TensorSpec([None, *x.shape[1:]], x.dtype)
            compiled["fn"] = tf.function(functools.partial(_call_in_inference_mode, model), input_signature=[spec])
        return compiled["fn"](x)

    return forward


def _call_in_inference_mode(model, x):
    return model(x, training=False)


def predict_dataset(model, dataset, forward: Optional[Callable] = None,
                    progress: Optional[Callable[[Iterable], Iterable]] = None) -> tuple[np.ndarray, np.ndarray]:
    """Outputs (float32 `[N, D]`) and labels (int64 `[N]`) of `model` over every `(x, y)` batch.

    `forward`: `inference_function(model)` for the compiled path (else `model(x, training=False)`
    eagerly). `progress` wraps the batch iterator (e.g. `events.track`). An empty dataset gives
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
