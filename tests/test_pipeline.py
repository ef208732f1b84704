"""tf.data pipeline: exact plan realisation, rejection resampling, augmentation, eval order."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow as tf

from serengeti_tf import config as cfg
from serengeti_tf.data import dataset, pipeline, sampling
from serengeti_tf.errors import UserError
from serengeti_tf.testing import jpeg_bytes, write_tiny_dataset
from serengeti_tf.train import distribution

SIZE = 32  # model input side in these tests (stored images are 40 px)
# Class order is sorted: a, b, c, d, e.
COUNTS = {"a": 60, "b": 20, "c": 6, "d": 1, "e": 0}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("pipe") / "prepared", COUNTS, val_per_class=2,
                              test_per_class=3, image_size=40)


def _config(name="ros", realisation="repeat", batch=16, **sampler) -> cfg.Config:
    config = cfg.Config()
    config.model.input_size = SIZE
    config.train.batch_size = batch
    config.sampler.name = name
    config.sampler.realisation = realisation
    config.sampler.deterministic = True
    # Caps scaled to the tiny dataset: ROS to 24, RUS to 10.
    config.sampler.ros_cap = 24
    config.sampler.rus_cap = 10
    for key, value in sampler.items():
        setattr(config.sampler, key, value)
    return cfg.validate(config)


def _plan(data_dir, config):
    return sampling.sampling_plan(dataset.train_counts(data_dir), config.sampler)


def _epoch_labels(ds) -> np.ndarray:
    return np.concatenate([labels.numpy() for _, labels in ds])


def _paths(records: tf.data.Dataset) -> list[str]:
    return [tf.io.parse_single_example(r, {"path": tf.io.FixedLenFeature([], tf.string)})["path"].numpy().decode()
            for r in records]


@pytest.mark.parametrize("name", ["ros", "rus", "ros_rus_5k", "none", "sqrt"])
def test_repeat_realises_plan_exactly_every_epoch(data_dir, name):
    config = _config(name)
    plan = _plan(data_dir, config)
    ds, steps = pipeline.make_train_dataset(data_dir, plan, config, augment=True, seed=3)
    expected = plan["target"].to_numpy()
    for _ in range(2):  # Keras re-iterates the dataset once per epoch
        batches = [(images.shape, labels.shape, images.dtype, labels.dtype) for images, labels in ds]
        assert len(batches) == steps == int(np.ceil(expected.sum() / 16))
        assert batches[0][0] == (16, SIZE, SIZE, 3) and batches[0][2] == tf.float32
        assert batches[0][3] == tf.int32
    labels = _epoch_labels(ds)
    np.testing.assert_array_equal(np.bincount(labels, minlength=len(COUNTS)), expected)
    assert ds.cardinality().numpy() == steps


def test_repeat_order_is_mixed_and_reshuffled(data_dir):
    config = _config("ros")
    plan = _plan(data_dir, config)
    ds, _ = pipeline.make_train_dataset(data_dir, plan, config, augment=False, seed=0)
    first, second = _epoch_labels(ds), _epoch_labels(ds)
    assert not np.array_equal(first, second)
    # Well mixed: the rare class d (10 of 84) is spread over the epoch, not in one run.
    positions = np.flatnonzero(first == 3)
    assert positions.max() - positions.min() > len(first) // 2


@pytest.mark.parametrize("realisation", ["repeat", "rejection"])
def test_same_seed_same_batches_other_seed_differs(data_dir, realisation):
    config = _config("ros_rus_5k", realisation=realisation)
    plan = _plan(data_dir, config)

    def first_epoch(seed):
        ds, _ = pipeline.make_train_dataset(data_dir, plan, config, augment=True, seed=seed)
        return [(x.numpy(), y.numpy()) for x, y in ds]

    a, b, c = first_epoch(7), first_epoch(7), first_epoch(8)
    assert all(np.array_equal(x1, x2) and np.array_equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not all(np.array_equal(y1, y2) for (_, y1), (_, y2) in zip(a, c))


def test_oversampled_class_uses_every_image_whole_repeats_plus_remainder(data_dir):
    files = dataset.train_class_files(data_dir)["b"]  # 20 images
    stream = pipeline.class_stream(files, original=20, target=47, seed=1, buffer=8)
    for _ in range(2):
        counts = collections.Counter(_paths(stream))
        assert len(counts) == 20 and sum(counts.values()) == 47
        # 47 = 2 * 20 + 7: every image twice, exactly 7 of them three times.
        assert sorted(collections.Counter(counts.values()).items()) == [(2, 13), (3, 7)]


def _neighbour_repeat_rate(orders: list[list]) -> float:
    """Share of the pairs adjacent in one epoch that are adjacent again in the next, averaged."""
    pairs = [{frozenset(p) for p in zip(order, order[1:])} for order in orders]
    return float(np.mean([len(a & b) / len(a) for a, b in zip(pairs, pairs[1:])]))


def test_each_epoch_order_is_fresh_like_a_true_shuffle(tmp_path):
    # 2,000 records of one class in two shards, as prepare stores them (a fixed order). A true
    # shuffle makes a pair adjacent again with probability 2/n; the former sequential read through
    # a 39-record buffer repeated neighbours ~13x as often here, this pipeline ~2x (seeds 1-3).
    # Ten epoch pairs: about 20 repeats expected under a true shuffle, so the estimate is stable.
    n, files = 2000, []
    for shard in range(2):
        files.append(str(tmp_path / f"class-{shard}.tfrecord"))
        with tf.io.TFRecordWriter(files[-1]) as writer:
            for i in range(shard * n // 2, (shard + 1) * n // 2):
                writer.write(b"%05d" % i)
    stream = pipeline.class_stream(files, original=n, target=n, seed=3, buffer=39, file_lengths=[n // 2] * 2)
    orders = [[int(r) for r in stream.as_numpy_iterator()] for _ in range(11)]
    assert all(sorted(order) == list(range(n)) for order in orders)  # every image once per epoch
    true_rate = 2 / n
    rate = _neighbour_repeat_rate(orders)
    assert rate < 3 * true_rate, f"neighbour-repeat rate {rate:.5f} vs {true_rate:.5f} for a true shuffle"
    # Reproducible: the same seed gives the same sequence of epoch orders.
    again = pipeline.class_stream(files, original=n, target=n, seed=3, buffer=39, file_lengths=[n // 2] * 2)
    assert [int(r) for r in again.as_numpy_iterator()] == orders[0]


def test_not_undersampled_class_loses_no_image_in_the_pipeline(data_dir):
    config = _config("rus")  # a (60) is cut to 10; b (20) -> 10; c (6) and d (1) untouched
    stream = pipeline.class_stream(dataset.train_class_files(data_dir)["c"], 6, 6, seed=0, buffer=4)
    assert sorted(_paths(stream)) == [f"train/c/{i:05d}.jpg" for i in range(6)]
    plan = _plan(data_dir, config)
    assert list(plan["target"]) == [10, 10, 6, 1, 0]


def test_undersampled_class_draws_a_fresh_subset_each_epoch(data_dir):
    files = dataset.train_class_files(data_dir)["a"]  # 60 images -> 10 per epoch
    stream = pipeline.class_stream(files, original=60, target=10, seed=5, buffer=16)
    subsets = [frozenset(_paths(stream)) for _ in range(3)]
    assert all(len(s) == 10 for s in subsets)
    assert len(set(subsets)) == 3
    fixed = pipeline.class_stream(files, original=60, target=10, seed=5, buffer=16, fixed_subset=True)
    fixed_subsets = [_paths(fixed) for _ in range(3)]
    assert len({frozenset(s) for s in fixed_subsets}) == 1 and len(fixed_subsets[0]) == 10
    assert len({tuple(s) for s in fixed_subsets}) > 1  # same images, new order


def test_undersampled_subsets_differ_in_full_pipeline(data_dir):
    # Only class a, undersampled; without augmentation identical images mean identical records.
    config = _config("rus", rus_cap=10)
    plan = _plan(data_dir, config)
    plan.loc[plan["species"] != "a", "target"] = 0
    ds, steps = pipeline.make_train_dataset(data_dir, plan, config, augment=False, seed=2)
    epochs = [np.concatenate([x.numpy() for x, _ in ds]) for _ in range(2)]
    assert epochs[0].shape[0] == 10 == epochs[1].shape[0] and steps == 1
    first = {e.tobytes() for e in epochs[0]}
    second = {e.tobytes() for e in epochs[1]}
    assert len(first) == 10 and first != second


def test_one_image_class_and_empty_class(data_dir):
    config = _config("ros")
    plan = _plan(data_dir, config)
    assert plan.set_index("species").loc["d", "target"] == 10 and plan.set_index("species").loc["e", "target"] == 0
    stream = pipeline.class_stream(dataset.train_class_files(data_dir)["d"], 1, 10, seed=0, buffer=100)
    assert _paths(stream) == ["train/d/00000.jpg"] * 10
    only_d = plan.copy()
    only_d["target"] = np.where(only_d["species"] == "d", 3, 0)
    ds, steps = pipeline.make_train_dataset(data_dir, only_d, config, augment=True)
    assert steps == 1 and list(_epoch_labels(ds)) == [3, 3, 3]
    nothing = plan.assign(target=0)
    with pytest.raises(UserError, match="delivers no training images"):
        pipeline.make_train_dataset(data_dir, nothing, config, augment=True)


def test_plan_must_match_the_dataset(data_dir, tmp_path):
    config = _config("ros")
    other = sampling.sampling_plan({"a": 60, "b": 20, "zebra": 3}, config.sampler)
    with pytest.raises(UserError, match="dataset lacks: zebra"):
        pipeline.make_train_dataset(data_dir, other, config, augment=False)
    wrong = _plan(data_dir, config)
    wrong.loc[0, "original"] = 61
    with pytest.raises(UserError, match="'a' has original count 61 but the dataset's train shards hold 60"):
        pipeline.make_train_dataset(data_dir, wrong, config, augment=False)


def test_rejection_matches_plan_within_tolerance(data_dir):
    """Per-class counts are ~binomial(T, t_c/T); allow 4 standard deviations (+1) per class."""
    config = _config("ros", realisation="rejection", batch=64)
    plan = _plan(data_dir, config)  # targets 60, 24, 24, 10, 0 -> T = 118
    ds, steps = pipeline.make_train_dataset(data_dir, plan, config, augment=False, seed=4)
    target = plan["target"].to_numpy().astype(float)
    total = target.sum()
    epochs = 4
    realised = np.zeros(len(target))
    for _ in range(epochs):
        labels = _epoch_labels(ds)
        assert len(labels) == total  # an epoch is the plan's total
        realised += np.bincount(labels, minlength=len(target))
    expected = target * epochs
    sd = np.sqrt(epochs * total * (target / total) * (1 - target / total))
    assert np.all(np.abs(realised - expected) <= 4 * sd + 1), (realised, expected)
    assert realised[4] == 0
    # The resampling really reshapes: class a is 60/87 = 69% of the data, 60/118 = 51% of the plan.
    assert realised[0] / realised.sum() < 0.6
    assert pipeline.rejection_reads_per_example(plan) == pytest.approx((10 / 118) / (1 / 87))


def _one_image_plan(data_dir, config, copies):
    plan = _plan(data_dir, config)
    plan["target"] = np.where(plan["species"] == "d", copies, 0)
    return plan


def test_augmentation_changes_the_images_reaching_the_model(data_dir):
    config = _config("none", batch=8)
    plan = _one_image_plan(data_dir, config, 8)  # 8 copies of the same stored image
    plain, _ = pipeline.make_train_dataset(data_dir, plan, config, augment=False, seed=0)
    augmented, _ = pipeline.make_train_dataset(data_dir, plan, config, augment=True, seed=0)
    plain_images = next(iter(plain))[0].numpy()
    assert np.allclose(plain_images, plain_images[0])  # no augmentation: all copies identical
    epoch1 = next(iter(augmented))[0].numpy()
    epoch2 = next(iter(augmented))[0].numpy()
    distinct = {image.tobytes() for image in epoch1}
    assert len(distinct) == 8
    assert not np.allclose(epoch1, epoch2)
    assert np.abs(epoch1 - plain_images).mean() > 0.05
    assert np.isfinite(epoch1).all()


def test_each_augmentation_does_something():
    rng = np.random.default_rng(0)
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    image[:, :32] = 200  # left half bright: a horizontal flip is visible
    image += rng.integers(0, 20, image.shape, dtype=np.uint8)
    data = tf.constant(jpeg_bytes(image))
    views = [pipeline.augment_decode(data, tf.constant([s, 1], tf.int64), 32).numpy() for s in range(12)]
    same = pipeline.augment_decode(data, tf.constant([0, 1], tf.int64), 32).numpy()
    np.testing.assert_array_equal(views[0], same)  # stateless: same seed, same view
    means = np.array([v.mean() for v in views])
    stds = np.array([v.std() for v in views])
    left_brighter = np.array([v[:, :16].mean() > v[:, 16:].mean() for v in views])
    assert means.std() > 0.02 and stds.std() > 0.02  # brightness / contrast / crop vary
    assert left_brighter.any() and not left_brighter.all()  # some views flipped


def test_eval_transform_and_normalisation():
    white = tf.fill([50, 100, 3], tf.constant(255, tf.uint8))
    out = pipeline.eval_transform(white, 40).numpy()
    assert out.shape == (40, 40, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], (1 - np.array(pipeline.MEAN_RGB)) / np.array(pipeline.STD_RGB),
                               rtol=1e-5)
    # Resize shorter side then center crop: a wide image keeps its middle.
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = 255
    crop = pipeline.eval_transform(tf.constant(wide), 20).numpy()
    assert crop.shape == (20, 20, 3) and crop[:, 2:-2].min() > 2.0
    png = tf.io.encode_png(tf.constant(wide))
    assert pipeline.decode_for_eval(png, 36).shape == (36, 36, 3)
    jpeg = tf.constant(jpeg_bytes(wide))
    assert pipeline.decode_for_eval(jpeg, 36).shape == (36, 36, 3)
    # The pipeline's JPEG fast path (decode only the center square) gives the same view, for
    # shrinking (antialiased beyond 2x) and enlarging alike; libjpeg's chroma upsampling differs
    # slightly along the crop's edge, so the last columns may differ by a few intensity levels.
    photo = np.random.default_rng(1).integers(0, 255, (90, 150, 3), dtype=np.uint8)
    data = tf.constant(jpeg_bytes(photo))
    for size in (32, 40, 120):
        fast = pipeline.decode_jpeg_for_eval(data, size).numpy()
        full = pipeline.decode_for_eval(data, size).numpy()
        edge = max(1, size // 30)
        np.testing.assert_allclose(fast[:, :-edge], full[:, :-edge], atol=1e-4)
        assert np.abs(fast - full).mean() < 0.01  # pure noise: the worst case for chroma


def test_eval_order_matches_split_metadata(data_dir):
    config = _config()
    meta = pipeline.split_metadata(data_dir, "test")
    assert list(meta.columns) == ["path", "capture_id", "site", "frame", "label"]
    assert len(meta) == 3 * len(COUNTS)
    ds = pipeline.make_eval_dataset(data_dir, "test", config, batch_size=4)
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.extend(y.numpy().tolist())
    assert labels == meta["label"].tolist()
    manifest = dataset.manifest(data_dir)
    test_rows = manifest[manifest["split"] == "test"]
    assert sorted(meta["path"]) == sorted(test_rows["path"])
    # Image i is the eval view of the record whose metadata is row i.
    images = np.concatenate(images)
    record = next(iter(tf.data.TFRecordDataset(dataset.split_files(data_dir, "test")).skip(7)))
    jpeg = tf.io.parse_single_example(record, {"image": tf.io.FixedLenFeature([], tf.string)})["image"]
    np.testing.assert_allclose(images[7], pipeline.decode_for_eval(jpeg, SIZE).numpy(), atol=1e-5)
    assert pipeline.make_eval_dataset(data_dir, "val", config).element_spec[1].dtype == tf.int32
    assert ds.cardinality().numpy() == 4  # 15 test images in batches of 4


def test_keras_fit_takes_one_iteration_per_epoch(data_dir):
    import warnings

    import keras

    config = _config("ros_rus_5k", batch=16)
    plan = _plan(data_dir, config)
    train, steps = pipeline.make_train_dataset(data_dir, plan, config, augment=True)
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(4, 3, strides=2),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(len(COUNTS))])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(train, epochs=3, steps_per_epoch=steps,
                            validation_data=pipeline.make_eval_dataset(data_dir, "val", config), verbose=0)
    assert len(history.history["loss"]) == 3 and len(history.history["val_loss"]) == 3
    assert not [w for w in caught if "ran out of data" in str(w.message)]


def test_works_under_a_distribution_strategy(data_dir):
    config = _config("ros_rus_5k", batch=8)
    plan = _plan(data_dir, config)
    ds, steps = pipeline.make_train_dataset(data_dir, plan, config, augment=True)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    seen = 0
    for _images, labels in strategy.experimental_distribute_dataset(ds):
        seen += int(strategy.experimental_local_results(labels)[0].shape[0])
    assert seen == plan["target"].sum()


def _parallel_stage_determinism(ds: tf.data.Dataset) -> list[str]:
    """The `deterministic` attribute of every parallel map/batch stage in the dataset's graph."""
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(tf.raw_ops.DatasetToGraphV2(input_dataset=ds._variant_tensor).numpy())
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return [n.attr["deterministic"].s.decode() for n in nodes
            if n.op in ("ParallelMapDatasetV2", "ParallelBatchDataset")]


@pytest.mark.parametrize("augment", [True, False])
def test_multi_worker_forces_a_deterministic_element_order(data_dir, augment):
    # AutoShardPolicy.DATA keeps every k-th element of each worker's copy: the orders must agree.
    config = _config("ros", deterministic=False)
    plan = _plan(data_dir, config)
    free, _ = pipeline.make_train_dataset(data_dir, plan, config, augment=augment, seed=0)
    assert set(_parallel_stage_determinism(free)) == {"false"}  # the single-worker default: fast
    config.train.strategy = "multi_worker"
    assert distribution.needs_same_order(config)  # what training passes on for this strategy
    ds, _ = pipeline.make_train_dataset(data_dir, plan, config, augment=augment, seed=0,
                                        same_order_on_every_worker=True)
    stages = _parallel_stage_determinism(ds)
    assert len(stages) >= 2 and set(stages) == {"true"}
    assert ds.options().deterministic is True
    assert ds.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
    first = [y.numpy() for _, y in ds]
    second_copy, _ = pipeline.make_train_dataset(data_dir, plan, config, augment=augment, seed=0,
                                                 same_order_on_every_worker=True)
    assert all(np.array_equal(a, b.numpy()) for a, (_, b) in zip(first, second_copy))  # a second worker's copy
