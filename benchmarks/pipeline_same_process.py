"""Benchmark: repeat-based samplers vs a plain loop doing the same per-image work, alternated in ONE
process, so load changes on a shared machine hit both sides alike (`pipeline_throughput.py` runs each
variant in its own process, minutes apart, which a machine at load 10-20 distorts).

Per sampler (none, ros, rus; with and without augmentation) the pair is:
  sampler  `pipeline.make_train_dataset` (repeat realisation): one epoch per iteration
  plain    TFRecordDataset over every train shard -> the same transform (`decode_jpeg_for_eval`, or
           `augment_decode` with per-element seeds from `Dataset.random`) -> the same batch and
           prefetch settings, as many records as the sampler's epoch (repeated/truncated)
Both run with a 1-thread tf.data pool and 1 intra-op thread; CPU-seconds per image (user + sys of
this process) are measured over whole epochs, alternating plain/sampler for --rounds rounds, and the
ratio of the medians is reported. Data: the same generated dataset as `pipeline_throughput.py`
(paper S9 counts / --scale, 256 px stored, 224 px output).

Usage: python benchmarks/pipeline_same_process.py [--data DIR] [--scale 50] [--rounds 3]
Writes benchmarks/results/pipeline_same_process.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
from pathlib import Path

from _common import use_checkout, write_results
from pipeline_throughput import BATCH, INPUT_SIZE, STORED_SIZE, paper_like_counts, sampler_settings

SAMPLERS = ("none", "ros", "rus")


def _one_core(dataset):
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)


def pair(data_dir: str, name: str, augment: bool, scale: int):
    """(sampler dataset, plain dataset doing the same per-image work on as many records)."""
    import tensorflow as tf

    from serengeti_tf import config as cfg
    from serengeti_tf.data import dataset, pipeline, sampling

    config = cfg.Config()
    config.model.input_size = INPUT_SIZE
    config.train.batch_size = BATCH
    config.sampler.name = name
    for key, value in sampler_settings(scale).items():
        setattr(config.sampler, key, value)
    cfg.validate(config)
    plan = sampling.sampling_plan(dataset.train_counts(data_dir), config.sampler)
    sampler, _ = pipeline.make_train_dataset(data_dir, plan, config, augment=augment, seed=0)
    total = int(plan["target"].sum())
    records = tf.data.TFRecordDataset(dataset.split_files(data_dir, "train")).repeat().take(total)
    if augment:
        seeds = tf.data.Dataset.random(seed=1, rerandomize_each_iteration=True).batch(2)

        def transform(record, seed):
            image, label = pipeline._parse_image_label(record)
            return pipeline.augment_decode(image, seed, INPUT_SIZE), label
        mapped = tf.data.Dataset.zip((records, seeds)).map(transform, num_parallel_calls=tf.data.AUTOTUNE,
                                                           deterministic=False)
    else:
        def transform(record):
            image, label = pipeline._parse_image_label(record)
            return pipeline.decode_jpeg_for_eval(image, INPUT_SIZE), label
        mapped = records.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    plain = mapped.batch(BATCH, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).prefetch(tf.data.AUTOTUNE)
    return _one_core(sampler), _one_core(plain), total


def cpu_per_image(ds) -> float:
    start, images = os.times(), 0
    for batch_images, _ in ds:
        images += int(batch_images.shape[0])
    end = os.times()
    return (end.user - start.user + end.system - start.system) / images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="generated dataset folder (made if missing)")
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    use_checkout()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from serengeti_tf.testing import write_tiny_dataset

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    data_dir = Path(args.data or Path(tempfile.mkdtemp(prefix="pipeline_same_")) / "prepared")
    counts = paper_like_counts(args.scale)
    if not (data_dir / "shards.json").exists():
        write_tiny_dataset(data_dir, counts, val_per_class=0, test_per_class=0, image_size=STORED_SIZE)
    load_start = round(os.getloadavg()[0], 2)
    rows = {}
    for augment in (False, True):
        for name in SAMPLERS:
            key = f"{name}{'_aug' if augment else ''}"
            sampler, plain, total = pair(str(data_dir), name, augment, args.scale)
            for ds in (sampler, plain):  # warm-up: graphs built, files opened once
                for _ in ds.take(1):
                    pass
            times = {"plain": [], "sampler": []}
            for _ in range(args.rounds):
                times["plain"].append(cpu_per_image(plain))
                times["sampler"].append(cpu_per_image(sampler))
            plain_s, sampler_s = statistics.median(times["plain"]), statistics.median(times["sampler"])
            rows[key] = {"epoch_images": total, "plain_images_per_cpu_s": round(1 / plain_s, 1),
                         "sampler_images_per_cpu_s": round(1 / sampler_s, 1), "ratio": round(plain_s / sampler_s, 3),
                         "rounds_cpu_s_per_image": {k: [round(v, 6) for v in vs] for k, vs in times.items()}}
            print(f"{key}: sampler {1 / sampler_s:.0f} vs plain {1 / plain_s:.0f} images/CPU-s "
                  f"-> {plain_s / sampler_s:.2f}x", flush=True)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "load_average_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
              "scale": args.scale, "rounds": args.rounds, "input_size": INPUT_SIZE, "batch_size": BATCH,
              "stored_size": STORED_SIZE, "rows": rows,
              "note": "shared 2-core machine loaded by other engineers' jobs: ratios from this one run only"}
    table = "\n".join(f"| {k} | {r['epoch_images']:,} | {r['sampler_images_per_cpu_s']:.0f} | "
                      f"{r['plain_images_per_cpu_s']:.0f} | {r['ratio']:.2f}x |" for k, r in rows.items())
    repeat_min = min(rows[n]["ratio"] for n in SAMPLERS)
    markdown = f"""# pipeline_same_process

{result['date']}; repeat-based samplers vs a plain loop doing the same per-image work (same transform,
same batch/prefetch settings, as many records), alternated {args.rounds} times in one process with one
tf.data thread; median CPU-seconds per image. Paper S9 counts / {args.scale}, {STORED_SIZE} px stored,
{INPUT_SIZE} px output. 1-min load average {load_start} at start, {result['load_average_1min']['end']} at
end ({result['note']}).

| sampler | epoch images | sampler images/CPU-s | plain images/CPU-s | ratio |
| --- | ---: | ---: | ---: | ---: |
{table}

- repeat-based samplers without augmentation: lowest ratio {repeat_min:.2f}x (target >= 0.9x:
  {'met' if repeat_min >= 0.9 else 'NOT met'}).
"""
    write_results("pipeline_same_process", result, markdown)


if __name__ == "__main__":
    main()
