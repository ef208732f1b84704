"""The compiled inference pass: traced once per model, whatever the batch sizes (no retracing warnings).

The lambda-per-model version this replaced logged TensorFlow's "triggered tf.function retracing"
warning twice in this test, as it did twice per demo in phase 2."""

from __future__ import annotations

import logging

import numpy as np


def test_one_trace_per_model_and_no_retracing_warning(caplog):
    import keras
    import tensorflow as tf

    from serengeti_tf.models.inference import inference_function, predict_dataset

    # Phase 2 in a grid builds several models in a row and runs each over a few batches, the last one
    # smaller: each model's pass must trace once, and TensorFlow must not call that retracing.
    x = np.random.default_rng(0).normal(size=(21, 6)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(21) % 3)).batch(8)  # batches of 8, 8, 5
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="tensorflow"):
            for _ in range(6):
                model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
                forward = inference_function(model)
                outputs, labels = predict_dataset(model, data, forward)
                np.testing.assert_allclose(outputs, model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)
                assert labels.tolist() == (np.arange(21) % 3).tolist()
                predict_dataset(model, data, forward)  # a second pass (e.g. the val split) reuses the trace
    finally:
        tf_logger.removeHandler(caplog.handler)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()], caplog.text
