"""Scaling switches for training: tf.distribute strategy, mixed precision, worker roles.

Batch sizes are GLOBAL: `train.batch_size` images per step summed over every replica (each of R
replicas sees batch_size / R), so a run means the same thing on 1 CPU or 8 GPUs.

- `default`: the default strategy (one device).
- `mirrored`: `tf.distribute.MirroredStrategy` over the local GPUs; on a CPU-only host the CPU is
  split into `SERENGETI_TF_CPU_REPLICAS` (default 2) logical devices, which must happen before
  TensorFlow initialises its devices (so create the strategy before any other TF work).
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy`; each process reads its role from
  the `TF_CONFIG` environment variable. The chief writes the run folder; other workers write into
  a temporary folder and resume from the chief's state.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator, Optional

from serengeti_tf.choices import STRATEGIES
from serengeti_tf.errors import UserError, setting

CPU_REPLICAS_ENV = "SERENGETI_TF_CPU_REPLICAS"


def _split_cpu(replicas: int) -> None:
    """Splits the CPU into `replicas` logical devices; a no-op (with a note) once TF is initialised."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
    except RuntimeError:
        # Already initialised (e.g. called twice in one process): keep whatever devices exist.
        pass


def cpu_replicas() -> int:
    raw = os.environ.get(CPU_REPLICAS_ENV, "2")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{CPU_REPLICAS_ENV} must be an int >= 1, got {raw!r}")
    return value


def tf_config() -> Optional[dict]:
    """The parsed TF_CONFIG, or None when unset."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise UserError(f"TF_CONFIG is not valid JSON ({err}); got {raw[:80]!r}") from None
    if not isinstance(data, dict) or "cluster" not in data or "task" not in data:
        found = sorted(data) if isinstance(data, dict) else data
        raise UserError(f"TF_CONFIG must hold 'cluster' and 'task', got keys {found!r}")
    return data


def make_strategy(name: str):
    """Creates the named tf.distribute strategy (registered in `STRATEGIES` below); call it before any
    other TensorFlow work."""
    return STRATEGIES.lookup(name)()


@STRATEGIES.register("default")
def default_strategy():
    import tensorflow as tf

    return tf.distribute.get_strategy()


@STRATEGIES.register("mirrored")
def mirrored_strategy():
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        _split_cpu(cpu_replicas())
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.MirroredStrategy()


@STRATEGIES.register("multi_worker")
def multi_worker_strategy():
    import tensorflow as tf

    if tf_config() is None:
        raise UserError(f"{setting('strategy')} multi_worker needs the TF_CONFIG environment variable "
                        "(cluster addresses and this process's task), got none")
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy=None) -> bool:
    """True for the process that writes the run folder (always, outside multi-worker training)."""
    config = tf_config()
    if config is None or strategy is None or not _is_multi_worker(strategy):
        return True
    task = config["task"]
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in config["cluster"]


def worker_label() -> str:
    config = tf_config() or {"task": {"type": "worker", "index": 0}}
    return f"{config['task'].get('type', 'worker')}{config['task'].get('index', 0)}"


def _is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def precision_policy_name(enabled: bool) -> str:
    """mixed_float16 on GPU (tensor cores), mixed_bfloat16 on CPU (float16 is slow/unsupported there)."""
    import tensorflow as tf

    if not enabled:
        return "float32"
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


@contextlib.contextmanager
def precision(enabled: bool) -> Iterator[str]:
    """Sets the Keras global dtype policy for building models, restoring the previous one after."""
    import keras

    previous = keras.config.dtype_policy()
    name = precision_policy_name(enabled)
    keras.config.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.config.set_dtype_policy(previous)


def shard_by_data(dataset, strategy):
    """Multi-worker runs split batches by element: class-sharded files cannot be split by file.

    DATA sharding keeps every k-th element of each worker's copy of the dataset, which is only a
    partition when every worker produces the same order: the dataset's own stages must already be
    deterministic (`pipeline.needs_deterministic_order`; an op's explicit `deterministic=False`
    would win over these options), and the options here ask for a deterministic order too.
    """
    import tensorflow as tf

    if not _is_multi_worker(strategy):
        return dataset
    options = tf.data.Options()
    options.deterministic = True
    # No core API replaces this option yet.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


# The private Keras methods `patch_for_multi_worker` replaces or calls: written against Keras 3.15
# (3.14 has them too), the range setup.cfg pins (tests/test_distribution.py checks the installed Keras is inside it).
PATCHED_KERAS_METHODS = ("_maybe_symbolic_build", "_symbolic_build")


def require_patched_keras_methods(model) -> None:
    """Stops with one line when this Keras lacks a private method the multi-worker patch relies on
    (a Keras outside the tested range), instead of failing somewhere inside `fit`."""
    import keras

    missing = [name for name in PATCHED_KERAS_METHODS if not callable(getattr(model, name, None))]
    if missing:
        raise UserError(f"train.strategy multi_worker patches Keras' private Model.{', Model.'.join(missing)}, "
                        f"which Keras {keras.__version__} lacks; install the tested range "
                        f"(pip install '{_declared_keras()}') or use another strategy")


def _declared_keras() -> str:
    """The `keras` requirement serengeti-tf was installed with (setup.cfg's tested range)."""
    from importlib import metadata

    try:
        requirements = metadata.requires("serengeti-tf") or []
    except metadata.PackageNotFoundError:
        return "keras (the range in setup.cfg)"
    return next((r.replace(" ", "") for r in requirements if r.split("<")[0].split(">")[0].strip() == "keras"),
                "keras (the range in setup.cfg)")


def patch_for_multi_worker(model, strategy) -> None:
    """Lets Keras 3 `Model.fit` run under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Keras 3.15 fails there in two places: its symbolic build reduces a distributed batch with
    `strategy.reduce` (which cannot convert a PerReplica batch), and it reduces the scalar logs of
    every step with `strategy.reduce("MEAN", v, axis=0)` (invalid for a scalar). This instance-level
    patch builds from this worker's local batch and returns each log as a 1-element vector, whose
    axis-0 mean is the same value. Metric variables are synchronised on write, so every replica
    already holds the global value. A no-op for other strategies.
    """
    import tensorflow as tf

    if not _is_multi_worker(strategy):
        return
    require_patched_keras_methods(model)

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(local, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    train_step = model.train_step

    def vector_logs_train_step(data):
        return {key: tf.reshape(value, [1]) for key, value in train_step(data).items()}

    model._maybe_symbolic_build = symbolic_build
    model.train_step = vector_logs_train_step
