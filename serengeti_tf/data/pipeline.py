"""tf.data input pipeline: read prepared shards, realise a sampling plan, decode, augment, batch.

Train (`make_train_dataset`) returns a batched dataset where ONE full iteration is ONE phase-1
epoch; Keras `fit` re-iterates it every epoch, which reshuffles everything and draws fresh
undersampled subsets. Two realisations of a plan (`config.sampler.realisation`):

repeat (exact)
    Each class is read alone from its own train shards. A class with `original` n and `target`
    t = k*n + r is streamed as k full passes (each in a fresh order) plus one pass filtered by a
    random keep-mask with exactly r ones, so it delivers exactly t images per epoch: every image
    k or k+1 times when oversampling; a uniformly random subset of t images when undersampling
    (a new subset every epoch unless `sampler.fixed_undersample_subset`, which keeps the mask and
    the read order fixed). A class with t >= n never loses an image. The classes are interleaved
    with `Dataset.choose_from_datasets` driven by a per-epoch shuffled sequence holding class c
    exactly t_c times, so each epoch delivers exactly the plan's counts in a uniformly mixed order.

rejection (approximate)
    A source stream draws classes i.i.d. from the original distribution (`sample_from_datasets`
    over per-class endless streams) and `Dataset.rejection_resample` reshapes it to the plan's
    target distribution. An epoch is defined as the plan's total number of examples (`take`), so
    per-class counts are random around the plan (about binomial). TF mixes the untouched source
    (probability m = min_i t_i/p_i) with a rejection-filtered copy; in expectation it reads
    M = max_i t_i/p_i source examples per delivered example (`rejection_reads_per_example`), with
    t, p the target and original class fractions: ~6.7 for the paper's ROS plan, ~1.8 for RUS.
    Rejected records are never decoded (decoding happens after resampling). TF prints
    "Proportion of examples rejected by sampler is high" (up to 10 lines per epoch) when more than
    half of the filtered stream is rejected, as for ROS; it is informational.
    `sampler.fixed_undersample_subset` does not apply (there is no subset to fix).

Images: eval view = resize the shorter side to S and center crop (done as center-square crop, then
resize; JPEG records decode only that square); train view = random resized crop (25-100% of the
area, aspect 3/4-4/3, decoding only the window), horizontal flip, brightness +-20%, contrast
0.8-1.25. Both are normalised with ImageNet mean/std (`normalize`), what `model.py` expects.

Within-class order (`fresh_order`): a class of at most WHOLE_SHUFFLE_MAX (256) records is
shuffled whole in memory every pass; no bigger class is held in memory: every epoch its
shards are cut into random segments that are read side by side in a random order, with a small
block shuffle, so each epoch's order is fresh: images that were neighbours in one epoch are
neighbours in the next about 2x as often as under a full shuffle (measured in the tests; the former
sequential read with a per-class buffer: ~13x). It is not a uniform random permutation. Memory per
big class: up to CLASS_CYCLE_LENGTH open readers (64 KiB read buffer each) plus a block of
min(MIX_BUFFER, shuffle_buffer / classes) serialised records (twice for rejection's two streams).

Randomness comes from seeds derived from `seed` (default `data_seed(config)`: `sampler.seed`, or
`train.seed` when that is null);
`config.sampler.deterministic` additionally makes the parallel stages keep their order, so a
seed reproduces the same batches. Per-element augmentation uses stateless ops fed by a seeded
`Dataset.random` stream, so it is reproducible too and differs every epoch.

Distribution: the datasets use auto-shard policy DATA, so Keras can distribute them under any
tf.distribute strategy without file-based sharding (train shards hold one class each). DATA sharding
needs the same element order on every worker, so a caller training on several workers passes
`same_order_on_every_worker` (train/distribution.py decides), which forces the deterministic order
whatever `sampler.deterministic` says.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from serengeti_tf.choices import REALISATIONS
from serengeti_tf.config import Config
from serengeti_tf.data import dataset as ds_reader
from serengeti_tf.data.records import FEATURE_SPEC
from serengeti_tf.data.sampling import check_plan_matches
from serengeti_tf.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE
# The model's input normalisation: ImageNet channel statistics on [0, 1] pixels.
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)
# Augmentation (train only). The crop keeps >= 25% of the area: animals in camera-trap frames are
# often small, so the Inception default of 8% would crop many of them out.
CROP_AREA_RANGE = (0.25, 1.0)
CROP_ASPECT_RANGE = (3 / 4, 4 / 3)
BRIGHTNESS_DELTA = 0.2  # fraction of the [0, 255] range
CONTRAST_RANGE = (0.8, 1.25)
# Within-class order (`fresh_order`): each train shard is cut into this many random segments per
# pass, this many segments of a class are read side by side, and blocks of at most MIX_BUFFER
# consecutive records are shuffled. Chosen by simulating the neighbour-repeat rate (about 1-2x a
# full shuffle for classes of 100-20,000 images; ~2x measured) at ~7 skipped records per record read.
SEGMENTS_PER_SHARD = 16
# A class with at most this many train records is shuffled whole in memory instead (a uniform
# permutation; ~7.5 MB at 30 KB per record).
WHOLE_SHUFFLE_MAX = 256
CLASS_CYCLE_LENGTH = 32
MIX_BUFFER = 8
# Read buffer of each open segment reader (TF's default is 256 KiB; 32 readers per class).
SEGMENT_READ_BUFFER_BYTES = 64 * 1024


# ---------------------------------------------------------------- image transforms (graph-safe)

def normalize(image: tf.Tensor) -> tf.Tensor:
    """[0, 255] pixels (any dtype) -> float32 with ImageNet mean/std per channel."""
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(MEAN_RGB)) / tf.constant(STD_RGB)


def _resize(image: tf.Tensor, height: int, width: int, source_side: tf.Tensor,
            builtin_ops: bool = False) -> tf.Tensor:
    """Bilinear resize to [height, width], antialiased only for a > 2x shrink (it costs ~2x CPU).

    `builtin_ops`: compute the antialiased branch as two matrix products (`antialiased_resize`), the
    same numbers with ops TFLite has built in (its ScaleAndTranslate op is not even a Flex op).
    """
    shrink = tf.cast(source_side, tf.float32) > 2.0 * float(max(height, width))
    antialiased = antialiased_resize if builtin_ops else \
        (lambda x, h, w: tf.image.resize(x, [h, w], antialias=True))
    return tf.cond(shrink, lambda: antialiased(image, height, width),
                   lambda: tf.image.resize(image, [height, width]))


def _triangle_weights(in_size: tf.Tensor, out_size: int) -> tf.Tensor:
    """[out_size, in_size] row-normalised weights of TF's antialiased bilinear (triangle) kernel."""
    inverse_scale = tf.cast(in_size, tf.float32) / float(out_size)
    kernel_scale = tf.maximum(inverse_scale, 1.0)  # the kernel widens with the shrink: antialiasing
    centres = (tf.range(out_size, dtype=tf.float32) + 0.5) * inverse_scale
    sources = tf.cast(tf.range(in_size), tf.float32) + 0.5
    weights = tf.maximum(0.0, 1.0 - tf.abs(sources[None, :] - centres[:, None]) / kernel_scale)
    return weights / tf.reduce_sum(weights, axis=1, keepdims=True)


def antialiased_resize(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """`tf.image.resize(image, [height, width], antialias=True)` (bilinear) for [..., H, W, C] float32,
    as separable matrix products (the kernel of TF's ScaleAndTranslate with zero translation)."""
    shape = tf.shape(image)
    rows = _triangle_weights(shape[-3], height)
    columns = _triangle_weights(shape[-2], width)
    return tf.einsum("yh,...hwc,xw->...yxc", rows, tf.cast(image, tf.float32), columns)


def center_square(height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """[offset_y, offset_x, side, side] of the centered square of side min(height, width)."""
    side = tf.minimum(height, width)
    return tf.stack([(height - side) // 2, (width - side) // 2, side, side])


def eval_transform(image_uint8: tf.Tensor, input_size: int, builtin_ops: bool = False) -> tf.Tensor:
    """Eval-time view: resize the shorter side to `input_size` and center crop a square, normalised.

    Done as center square crop, then resize to `input_size` (the same view, less work). Takes one
    image [H, W, 3] or a batch [B, H, W, 3] of one size (the exported models, `export.py`).
    `builtin_ops`: see `_resize` (for TFLite exports).
    """
    shape = tf.shape(image_uint8)
    window = center_square(shape[-3], shape[-2])
    square = tf.image.crop_to_bounding_box(image_uint8, window[0], window[1], window[2], window[3])
    return _finish_eval(square, window[2], input_size, builtin_ops)


def _finish_eval(square: tf.Tensor, side: tf.Tensor, input_size: int, builtin_ops: bool = False) -> tf.Tensor:
    # Resizing computes in float32 whatever the input dtype; casting first gives the same pixels and
    # keeps the exported TFLite model on builtin ops (TFLite's resize wants equal in/out types).
    square = tf.cast(square, tf.float32)
    image = tf.clip_by_value(_resize(square, input_size, input_size, side, builtin_ops), 0.0, 255.0)
    image.set_shape(square.shape[:-3].concatenate([input_size, input_size, 3]))
    return normalize(image)


def decode_for_eval(jpeg_bytes: tf.Tensor, input_size: int) -> tf.Tensor:
    """Encoded image bytes (JPEG, PNG, BMP or GIF) -> eval view, float32 [S, S, 3] normalised."""
    image = tf.io.decode_image(jpeg_bytes, channels=3, expand_animations=False)
    return eval_transform(image, input_size)


def decode_jpeg_for_eval(jpeg_bytes: tf.Tensor, input_size: int) -> tf.Tensor:
    """`decode_for_eval` for JPEG bytes, decoding only the center square (same pixels, less work)."""
    shape = tf.io.extract_jpeg_shape(jpeg_bytes)
    window = center_square(shape[0], shape[1])
    square = tf.image.decode_and_crop_jpeg(jpeg_bytes, window, channels=3)
    return _finish_eval(square, window[2], input_size)


def augment_decode(jpeg_bytes: tf.Tensor, seed: tf.Tensor, input_size: int) -> tf.Tensor:
    """Train-time view from JPEG bytes: random resized crop, horizontal flip, brightness, contrast.

    Stateless ops: the same `seed` (shape [2]) gives the same view. The crop window is decoded
    alone (`decode_and_crop_jpeg`), which is cheaper than decoding the whole image.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    shape = tf.io.extract_jpeg_shape(jpeg_bytes)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]), seed=seeds[0],
        min_object_covered=0.0, aspect_ratio_range=CROP_ASPECT_RANGE, area_range=CROP_AREA_RANGE,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(jpeg_bytes, window, channels=3)
    image = _resize(image, input_size, input_size, tf.maximum(size[0], size[1]))
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    image = tf.image.stateless_random_brightness(image, BRIGHTNESS_DELTA * 255.0, seeds[2])
    image = tf.image.stateless_random_contrast(image, CONTRAST_RANGE[0], CONTRAST_RANGE[1], seeds[3])
    image = tf.clip_by_value(image, 0.0, 255.0)
    image.set_shape([input_size, input_size, 3])
    return normalize(image)


def _parse_image_label(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    spec = {"image": FEATURE_SPEC["image"], "label": FEATURE_SPEC["label"]}
    parsed = tf.io.parse_single_example(serialized, spec)
    return parsed["image"], tf.cast(parsed["label"], tf.int32)


# ---------------------------------------------------------------- helpers

def derive_seed(seed: int, *parts) -> int:
    """A stable 31-bit seed for one random stage, so stages never share a random stream."""
    text = "/".join(str(p) for p in (seed, *parts))
    return zlib.crc32(text.encode("utf-8")) & 0x7FFFFFFF


def data_seed(config: Config) -> int:
    """The training data stream's seed: `sampler.seed` when set, else `train.seed`."""
    return int(config.train.seed if config.sampler.seed is None else config.sampler.seed)


def _options(deterministic: bool) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    # Train shards hold one class each: file sharding across workers would split by class.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


@tf.autograph.experimental.do_not_convert
def _segments(files: tf.Tensor, lengths: np.ndarray, pass_seed: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """One pass's segments in reading order: (path, start, count, offset of the shard) vectors.

    Each shard is cut at SEGMENTS_PER_SHARD - 1 uniform random points (empty segments dropped) and
    the segments are shuffled; all ops stateless in `pass_seed` (int64 [2]). Traced inside `map`:
    `lengths` (int64 numpy) is a fixed Python-side value.
    """
    seeds = tf.random.experimental.stateless_split(pass_seed, 2)
    num_files = int(lengths.shape[0])
    length = tf.constant(lengths, tf.int64)
    offsets = tf.constant(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
    unit = tf.random.stateless_uniform([num_files, SEGMENTS_PER_SHARD - 1], seed=seeds[0], dtype=tf.float64)
    cuts = tf.sort(tf.cast(tf.floor(unit * tf.cast(length[:, None] + 1, tf.float64)), tf.int64), axis=1)
    starts = tf.concat([tf.zeros([num_files, 1], tf.int64), cuts], 1)
    counts = tf.concat([cuts, length[:, None]], 1) - starts
    shard = tf.repeat(tf.range(num_files, dtype=tf.int64), SEGMENTS_PER_SHARD)
    starts, counts = tf.reshape(starts, [-1]), tf.reshape(counts, [-1])
    keep = counts > 0
    shard, starts, counts = tf.boolean_mask(shard, keep), tf.boolean_mask(starts, keep), tf.boolean_mask(counts, keep)
    order = tf.argsort(tf.random.stateless_uniform(tf.shape(shard), seed=seeds[1]))
    shard = tf.gather(shard, order)
    return tf.gather(files, shard), tf.gather(starts, order), tf.gather(counts, order), tf.gather(offsets, shard)


def fresh_order(files: Sequence[str], lengths: Sequence[int], seed: int, buffer: int,
                passes: int | None = 1, with_positions: bool = False) -> tf.data.Dataset:
    """`passes` passes (None: endless) over every record of `files` (`lengths` records each), each
    pass in a fresh order; a new sequence of orders every iteration, reproducible for `seed`.

    A class of at most WHOLE_SHUFFLE_MAX records is shuffled whole in memory (a uniform
    permutation every pass) and its records are cached after the first pass. A bigger class is not
    held in memory (TFRecords have no random access), so for each pass: the class's shards are cut
    at random points into SEGMENTS_PER_SHARD segments each, the segments are shuffled,
    CLASS_CYCLE_LENGTH of them are read side by side (sequential `interleave`, block 1; each reader
    `skip`s to its segment's start, about
    SEGMENTS_PER_SHARD / 2 records skipped per record delivered), and each block of `buffer`
    (<= MIX_BUFFER) consecutive records is shuffled. Consecutive records then come from different,
    randomly placed segments, so images that are neighbours in one epoch are neighbours in the next
    about twice as often as under a full shuffle (`tests/test_pipeline.py` measures it on 2,000
    records in two shards: ~2x; the former sequential read with a 39-record buffer: ~13x, and more
    for bigger classes). It is not a uniform random permutation. Blocks of CLASS_CYCLE_LENGTH or
    more would bring each reader's consecutive records back together, so they stay small. The
    segments of all passes form one stream read by one `interleave`, so the last segments of a pass
    are read alongside the first of the next (each pass still delivers every record once).

    Randomness: two draws per pass and per mixing block from `Dataset.random` streams that are
    redrawn every iteration (reproducible for `seed`); every other random choice is stateless in
    those draws (TF's per-iteration reshuffling draws from a seed generator that the two copies of
    the source inside `rejection_resample` share, which made those runs irreproducible).
    Cost: the datasets are built once per iteration without `flat_map` (whose per-iteration
    instantiation of nested datasets cost ~0.1 CPU-s per class and epoch).
    With `with_positions`, elements are `(record, its position in the class's stored order)`.
    """
    lengths = np.asarray([int(n) for n in lengths], dtype=np.int64)
    if int(lengths.sum()) <= WHOLE_SHUFFLE_MAX:
        # A small class is shuffled whole in memory: a uniform permutation every pass, and no
        # per-pass segment set-up (which costs more than a small class's records). Its serialized
        # records are also kept after the first pass (`cache`: at most WHOLE_SHUFFLE_MAX records,
        # ~7.5 MB at 30 KB), so later passes and epochs open and read no file for it.
        records = tf.data.TFRecordDataset(tf.constant([str(f) for f in files], tf.string)).cache()
        if with_positions:
            records = tf.data.Dataset.zip((records, tf.data.Dataset.range(int(lengths.sum()))))
        whole = records.shuffle(int(lengths.sum()), seed=derive_seed(seed, "whole"), reshuffle_each_iteration=True)
        return whole.repeat(passes) if passes is not None else whole.repeat()
    mix_buffer = max(1, min(int(buffer), MIX_BUFFER, int(lengths.sum())))
    paths = tf.constant([str(f) for f in files], tf.string)
    pass_seeds = tf.data.Dataset.random(seed=derive_seed(seed, "iteration"), rerandomize_each_iteration=True).batch(2)
    if passes is not None:
        pass_seeds = pass_seeds.take(passes)
    segments = pass_seeds.map(lambda pass_seed: _segments(paths, lengths, pass_seed)).unbatch()

    def read(path, start, count, offset):
        records = tf.data.TFRecordDataset(path, buffer_size=SEGMENT_READ_BUFFER_BYTES).skip(start).take(count)
        if not with_positions:
            return records
        return tf.data.Dataset.zip((records, tf.data.Dataset.range(offset + start, offset + start + count)))

    stream = segments.interleave(read, cycle_length=CLASS_CYCLE_LENGTH, block_length=1)
    if mix_buffer == 1:
        return stream
    # Shuffle each block of `mix_buffer` consecutive records (stateless; `Dataset.shuffle` cannot
    # take a per-iteration tensor seed once Keras has set a global seed).
    block_seeds = tf.data.Dataset.random(seed=derive_seed(seed, "mix"), rerandomize_each_iteration=True).batch(2)

    def mix(block, block_seed):
        key = tf.random.stateless_uniform(tf.shape(tf.nest.flatten(block)[0])[:1], seed=block_seed)
        order = tf.argsort(key)
        return tf.nest.map_structure(lambda part: tf.gather(part, order), block)
    return tf.data.Dataset.zip((stream.batch(mix_buffer), block_seeds)).map(mix).unbatch()


def _keep_mask(length: int, keep: int, seed: int) -> tf.data.Dataset:
    """`length` booleans with exactly `keep` True, in a random order (a new one each iteration)."""
    mask = np.zeros(length, dtype=bool)
    mask[:keep] = True
    return tf.data.Dataset.from_tensor_slices(mask).shuffle(length, seed=seed, reshuffle_each_iteration=True)


def _record_lengths(files: Sequence[str]) -> list[int]:
    return [int(tf.data.TFRecordDataset(f).reduce(np.int64(0), lambda n, _: n + 1)) for f in files]


def class_stream(files: Sequence[str], original: int, target: int, seed: int, buffer: int,
                 fixed_subset: bool = False, file_lengths: Sequence[int] | None = None) -> tf.data.Dataset:
    """One class's serialized records for one epoch: exactly `target` of its `original` images.

    k = target // original full passes (each in a fresh order, `fresh_order`) plus a pass keeping
    exactly r = target % original images chosen by a random mask (a new subset each epoch; with
    `fixed_subset` the same r images, in a fresh order). `file_lengths`: records per file (the
    shard index's `num_examples`; counted when not given).
    """
    if original <= 0 or target <= 0:
        raise UserError(f"class_stream needs original and target >= 1, got {original} and {target}")
    lengths = list(file_lengths) if file_lengths is not None else _record_lengths(files)
    if len(lengths) != len(files) or sum(lengths) != original:
        raise UserError(f"class_stream: the files hold {sum(lengths)} records ({lengths}), expected {original}")
    full_passes, remainder = divmod(target, original)
    parts = []
    if full_passes:
        parts.append(fresh_order(files, lengths, derive_seed(seed, "full"), buffer, passes=full_passes))
    if remainder:
        if fixed_subset:
            # The mask is over stored positions, so the same images are kept every epoch.
            rng = np.random.default_rng(derive_seed(seed, "mask"))
            keep = tf.constant(np.isin(np.arange(original), rng.choice(original, remainder, replace=False)))
            kept = (fresh_order(files, lengths, derive_seed(seed, "kept"), buffer, with_positions=True)
                    .filter(lambda record, position: tf.gather(keep, position))
                    .map(lambda record, position: record))
        else:
            kept = (tf.data.Dataset.zip((fresh_order(files, lengths, derive_seed(seed, "remainder"), buffer),
                                         _keep_mask(original, remainder, derive_seed(seed, "mask"))))
                    .filter(lambda record, keep: keep)
                    .map(lambda record, keep: record))
        parts.append(kept)
    stream = parts[0]
    for part in parts[1:]:
        stream = stream.concatenate(part)
    return stream


def rejection_reads_per_example(plan: pd.DataFrame) -> float:
    """Expected source examples read per delivered example by `rejection_resample`: max_i t_i / p_i."""
    original = plan["original"].to_numpy(dtype=np.float64)
    target = plan["target"].to_numpy(dtype=np.float64)
    active = original > 0
    p = original[active] / original.sum()
    t = target[active] / target.sum()
    return float(np.max(t / p))


def _class_buffer(shuffle_buffer: int, active_classes: int) -> int:
    """Per-class mixing block: `shuffle_buffer` records shared by the classes, at most MIX_BUFFER."""
    return max(1, min(MIX_BUFFER, shuffle_buffer // max(1, active_classes)))


ClassShards = dict[str, tuple[list[str], list[int]]]


def _check_plan_against_shards(dataset_dir: str | Path, plan: pd.DataFrame) -> ClassShards:
    """Class -> (its train shard paths, records in each), after checking the plan against them."""
    names = ds_reader.class_names(dataset_dir)
    check_plan_matches(plan, names)
    root = Path(dataset_dir)
    files: ClassShards = {name: ([], []) for name in names}
    for shard in ds_reader.shard_index(dataset_dir)["train"]:
        files[shard["class"]][0].append(str(root / shard["file"]))
        files[shard["class"]][1].append(int(shard["num_examples"]))
    stored = {name: sum(lengths) for name, (_, lengths) in files.items()}
    for row in plan.itertuples(index=False):
        if int(row.original) != stored[row.species]:
            raise UserError(f"sampling plan: class {row.species!r} has original count {row.original} but the "
                            f"dataset's train shards hold {stored[row.species]}; make the plan from this dataset")
    if int(plan["target"].sum()) <= 0:
        raise UserError(f"sampling plan delivers no training images (targets sum to {int(plan['target'].sum())})")
    return files


# ---------------------------------------------------------------- realisations (serialized records)

def repeat_records(files: ClassShards, plan: pd.DataFrame, config: Config, seed: int) -> tf.data.Dataset:
    active = plan[plan["target"] > 0].reset_index(drop=True)
    buffer = _class_buffer(config.sampler.shuffle_buffer, len(active))
    streams = [class_stream(files[row.species][0], int(row.original), int(row.target),
                            derive_seed(seed, "class", row.species), buffer,
                            config.sampler.fixed_undersample_subset, file_lengths=files[row.species][1])
               for row in active.itertuples(index=False)]
    if len(streams) == 1:
        return streams[0]
    choices = np.repeat(np.arange(len(active), dtype=np.int64), active["target"].to_numpy())
    # A full-length shuffle of the class sequence: uniformly mixed, and each class exactly t times.
    choice_ds = tf.data.Dataset.from_tensor_slices(choices).shuffle(
        len(choices), seed=derive_seed(seed, "choices"), reshuffle_each_iteration=True)
    return tf.data.Dataset.choose_from_datasets(streams, choice_ds, stop_on_empty_dataset=True)


def rejection_records(files: ClassShards, plan: pd.DataFrame, config: Config,
                       seed: int) -> tf.data.Dataset:
    # Classes are numbered among the non-empty ones: an empty class would put 0/0 in TF's ratios.
    source_rows = plan[plan["original"] > 0].reset_index(drop=True)
    buffer = _class_buffer(config.sampler.shuffle_buffer, len(source_rows))
    streams = []
    for label, row in enumerate(source_rows.itertuples(index=False)):
        class_seed = derive_seed(seed, "class", row.species)
        stream = (fresh_order(*files[row.species], seed=class_seed, buffer=buffer, passes=None)
                  .map(lambda record, label=label: (tf.constant(label, tf.int32), record)))
        streams.append(stream)
    original = source_rows["original"].to_numpy(dtype=np.float64)
    target = source_rows["target"].to_numpy(dtype=np.float64)
    weights = (original / original.sum()).tolist()
    source = (streams[0] if len(streams) == 1 else tf.data.Dataset.sample_from_datasets(
        streams, weights=weights, seed=derive_seed(seed, "source"), stop_on_empty_dataset=True,
        rerandomize_each_iteration=True))
    resampled = source.rejection_resample(
        class_func=lambda label, record: label, target_dist=(target / target.sum()).astype(np.float32),
        initial_dist=(original / original.sum()).astype(np.float32), seed=derive_seed(seed, "reject"))
    return resampled.map(lambda label, element: element[1]).take(int(target.sum()))


# ---------------------------------------------------------------- public datasets

def make_train_dataset(dataset_dir: str | Path, plan: pd.DataFrame, config: Config, augment: bool,
                       seed: int | None = None,
                       same_order_on_every_worker: bool = False) -> tuple[tf.data.Dataset, int]:
    """Batched phase-1 (or phase-2) training data realising `plan`; one iteration = one epoch.

    Returns `(dataset, steps_per_epoch)`: batches of `(images float32 [B, S, S, 3] normalised,
    labels int32 [B])` with B = `config.train.batch_size` (the last batch may be smaller) and
    S = `config.model.input_size`; steps_per_epoch = ceil(plan total / B), also the dataset's
    cardinality. Without `augment` the images get the eval transform. `same_order_on_every_worker`
    (multi-worker training: AutoShardPolicy.DATA keeps every k-th element of each worker's copy)
    keeps every parallel stage in order, as `sampler.deterministic` does.
    """
    realise = REALISATIONS.lookup(config.sampler.realisation)  # `repeat_records` or `rejection_records`
    files = _check_plan_against_shards(dataset_dir, plan)
    seed = data_seed(config) if seed is None else int(seed)
    size, batch_size = config.model.input_size, config.train.batch_size
    total = int(plan["target"].sum())
    steps = math.ceil(total / batch_size)
    deterministic = bool(config.sampler.deterministic) or same_order_on_every_worker
    records = realise(files, plan, config, seed)
    if augment:
        # One [2]-int64 seed per element, new every epoch, reproducible for `seed`.
        element_seeds = tf.data.Dataset.random(seed=derive_seed(seed, "augment"),
                                               rerandomize_each_iteration=True).batch(2)
        paired = tf.data.Dataset.zip((records, element_seeds))

        def transform(record, element_seed):
            image, label = _parse_image_label(record)
            return augment_decode(image, element_seed, size), label
        data = paired.map(transform, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    else:
        def transform(record):
            image, label = _parse_image_label(record)
            return decode_jpeg_for_eval(image, size), label
        data = records.map(transform, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    data = (data.batch(batch_size, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
            .apply(tf.data.experimental.assert_cardinality(steps))
            .prefetch(AUTOTUNE)
            .with_options(_options(deterministic)))
    return data, steps


def make_views_dataset(dataset_dir: str | Path, split: str, config: Config, views: int, seed: int,
                       batch_size: int | None = None) -> tf.data.Dataset:
    """Batched `(images, labels)`: `views` random train-time augmented views of every record of
    `split`, view by view, each view in stored order (so row v*N + i is view v of record i).

    Each view is fixed by `(seed, v, i)` (stateless ops), so a rerun computes the same views. For
    the cached-feature head fits (phase-2 fast path, cRT) with `train.feature_views` > 1.
    """
    if views < 1:
        raise UserError(f"views must be an int >= 1, got {views!r}")
    files = ds_reader.split_files(dataset_dir, split)
    batch_size = config.eval.batch_size if batch_size is None else int(batch_size)
    size, base = config.model.input_size, derive_seed(seed, "feature-views")
    records = tf.data.TFRecordDataset(tf.constant(files, dtype=tf.string)).enumerate()

    def transform(view, index, record):
        image, label = _parse_image_label(record)
        return augment_decode(image, tf.stack([tf.constant(base, tf.int64), view * (1 << 32) + index]), size), label
    return (tf.data.Dataset.range(views)
            .flat_map(lambda view: records.map(lambda index, record: (view, index, record)))
            .map(transform, num_parallel_calls=AUTOTUNE, deterministic=True)
            .batch(batch_size)
            .prefetch(AUTOTUNE)
            .with_options(_options(True)))


def make_eval_dataset(dataset_dir: str | Path, split: str, config: Config,
                      batch_size: int | None = None) -> tf.data.Dataset:
    """Batched `(images, labels int32)` of one split in stored order (the order of `split_metadata`)."""
    files = ds_reader.split_files(dataset_dir, split)
    batch_size = config.eval.batch_size if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise UserError(f"eval batch size must be >= 1, got {batch_size}")
    size = config.model.input_size

    def transform(record):
        image, label = _parse_image_label(record)
        return decode_jpeg_for_eval(image, size), label
    records = tf.data.TFRecordDataset(tf.constant(files, dtype=tf.string))
    # A known length lets Keras show progress and end an evaluation without a "ran out of data" warning.
    examples = sum(int(shard["num_examples"]) for shard in ds_reader.shard_index(dataset_dir)[split])
    return (records.map(transform, num_parallel_calls=AUTOTUNE, deterministic=True)
            .batch(batch_size)
            .apply(tf.data.experimental.assert_cardinality(math.ceil(examples / batch_size)))
            .prefetch(AUTOTUNE)
            .with_options(_options(True)))


def split_metadata(dataset_dir: str | Path, split: str) -> pd.DataFrame:
    """path, capture_id, site, frame, label of every record of `split`, in `make_eval_dataset` order;
    detector-crop datasets add crop, box_x, box_y, box_w, box_h, detection_conf."""
    from serengeti_tf.data.records import CROP_FEATURES

    files = ds_reader.split_files(dataset_dir, split)
    spec = {key: value for key, value in FEATURE_SPEC.items() if key != "image"}
    columns: dict[str, list] = {key: [] for key in spec}
    records = tf.data.TFRecordDataset(tf.constant(files, dtype=tf.string)).batch(1024)
    for batch in records.map(lambda serialized: tf.io.parse_example(serialized, spec)):
        for key in ("path", "capture_id", "site"):
            columns[key].extend(value.decode("utf-8") for value in batch[key].numpy())
        for key in spec.keys() - {"path", "capture_id", "site"}:
            columns[key].extend(batch[key].numpy().tolist())
    frame = pd.DataFrame(columns).astype({"frame": np.int64, "label": np.int64, "crop": np.int64})
    frame = frame[["path", "capture_id", "site", "frame", "label", *CROP_FEATURES]]
    if not (frame["crop"] >= 0).any():  # whole frames: the columns they always had
        frame = frame.drop(columns=list(CROP_FEATURES))
    return frame
