"""Benchmark: `prepare --runner beam` (DirectRunner, multi-process) at 1 and 2 workers vs the local
runner at the same worker counts, on the same generated images, and a projection to Dataflow.

Each run is the whole `prepare_dataset` job (read a plain CSV, filter, split, decode/resize/encode
every image, write shards, manifest, counts, TFDS metadata) into a fresh folder; the runs alternate
(local 1, beam 1, local 2, beam 2) so load changes on the shared machine hit both runners alike.
Ratios are what compare (beam wall / local wall at the same workers; 2-worker speed-up per runner).

Each configuration runs --repeats times (interleaved); wall ratios use the best (shortest) run of
each. CPU seconds are counted too (this process plus its reaped children: the pool or Beam's worker
processes), which the other jobs on the machine disturb much less than wall time. Per-image cost for
the projection: Beam's marginal CPU seconds per image, from a 1-worker run on a quarter of the
images (full minus quarter: Beam's fixed start-up, worker processes and TensorFlow imports, cancels).
The Dataflow projection multiplies it by the images decoded (the non-empty ones: empty, human and
multi-species rows are dropped before any decode) and by price assumptions stated in the output.

Usage: python benchmarks/prepare_scaling.py [--images 400] [--width 2048 --height 1536]
Writes benchmarks/results/prepare_scaling.json and .md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from _common import use_checkout, write_results
from prepare_throughput import generate

# Snapshot Serengeti on LILA (the figures) and the stated price assumptions.
SERENGETI_IMAGES = 7_100_000
SERENGETI_NON_EMPTY = 2_500_000
ASSUMED_VCPU_HOUR_USD = 0.056  # ASSUMPTION: Dataflow batch vCPU price (us-central1 list price; check yours)
ASSUMED_GB_HOUR_USD = 0.003557  # ASSUMPTION: Dataflow batch memory price per GB-hour
ASSUMED_SHUFFLE_GB_USD = 0.011  # ASSUMPTION: Dataflow Shuffle price per GB processed
ASSUMED_WORKER = {"type": "n1-standard-4", "vcpus": 4, "memory_gb": 15}
ASSUMED_WORKERS = 32
ASSUMED_STORED_KB = 25  # ASSUMPTION: one prepared 256 px JPEG (q90) is ~25 KB; shuffled twice (Reshuffle + group)
ASSUMED_STARTUP_MIN = 5  # ASSUMPTION: Dataflow job start and worker boot


def write_source(folder: Path, names: list[str], name: str = "labels.csv") -> Path:
    import pandas as pd

    species = ["aardvark", "buffalo", "zebra", "lionfemale"]
    rows = [dict(path=n, label=species[i % len(species)], capture=f"c{i // 2}", site=f"s{i % 5}")
            for i, n in enumerate(names)]
    labels = folder / name
    pd.DataFrame(rows).to_csv(labels, index=False)
    return labels


def run(folder: Path, labels: Path, out: Path, runner: str, workers: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its reaped children: pool or Beam workers)."""
    from serengeti_tf import config as cfg
    from serengeti_tf.data.prepare import prepare_dataset

    config = cfg.resolve(updates=[{"data": {"metadata": [str(labels)], "image_root": str(folder), "workers": workers,
                                            "runner": runner, "shard_size": 256}}])
    shutil.rmtree(out, ignore_errors=True)
    cpu0, start = os.times(), time.perf_counter()
    summary = prepare_dataset(config, out, progress=False)
    elapsed, cpu1 = time.perf_counter() - start, os.times()
    assert summary["images_kept"] > 0
    return elapsed, sum(cpu1[i] - cpu0[i] for i in range(4))


def projection(core_seconds_per_image: float) -> dict:
    vcpu_hours = core_seconds_per_image * SERENGETI_NON_EMPTY / 3600
    vcpus = ASSUMED_WORKERS * ASSUMED_WORKER["vcpus"]
    worker_hours = vcpu_hours / ASSUMED_WORKER["vcpus"]
    shuffle_gb = 2 * SERENGETI_NON_EMPTY * ASSUMED_STORED_KB / 1e6
    cost = {"vcpu": vcpu_hours * ASSUMED_VCPU_HOUR_USD,
            "memory": worker_hours * ASSUMED_WORKER["memory_gb"] * ASSUMED_GB_HOUR_USD,
            "shuffle": shuffle_gb * ASSUMED_SHUFFLE_GB_USD}
    return {"images_decoded": SERENGETI_NON_EMPTY, "metadata_rows": SERENGETI_IMAGES,
            "vcpu_hours": round(vcpu_hours, 1), "workers": ASSUMED_WORKERS, "worker": ASSUMED_WORKER,
            "image_stage_minutes": round(vcpu_hours * 60 / vcpus, 1),
            "wall_minutes_with_startup": round(vcpu_hours * 60 / vcpus + ASSUMED_STARTUP_MIN, 1),
            "shuffle_gb": round(shuffle_gb, 1),
            "cost_usd": {k: round(v, 2) for k, v in cost.items()}, "total_usd": round(sum(cost.values()), 2),
            "assumptions": {"vcpu_hour_usd": ASSUMED_VCPU_HOUR_USD, "gb_hour_usd": ASSUMED_GB_HOUR_USD,
                            "shuffle_gb_usd": ASSUMED_SHUFFLE_GB_USD, "stored_kb": ASSUMED_STORED_KB,
                            "startup_min": ASSUMED_STARTUP_MIN,
                            "per_image_cost": "this machine's DirectRunner marginal CPU-seconds per image (full "
                                              "run minus quarter run); a Dataflow vCPU is taken as fast as one "
                                              "core here"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1536)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep", help="folder for the generated images (reused across runs)")
    args = parser.parse_args()
    use_checkout()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = Path(args.keep or tempfile.mkdtemp(prefix="prepare-scaling-"))
    folder = work / f"src_{args.width}x{args.height}"
    names = generate(folder, args.images, args.width, args.height, workers=2)
    labels = write_source(folder, names)
    # A quarter of the images, 1 worker: the difference to the full run is the marginal cost per image
    # (the fixed start-up cancels out), which is what the projection scales.
    quarter = write_source(folder, names[: args.images // 4], "labels_quarter.csv")
    import tensorflow  # noqa: F401 - imported once, outside every timing

    runs: dict[str, list[tuple[float, float]]] = {}
    load_start = round(os.getloadavg()[0], 2)
    for _ in range(args.repeats):
        for workers in (1, 2):
            for runner in ("local", "beam"):
                key = f"{runner}_{workers}"
                runs.setdefault(key, []).append(run(folder, labels, work / f"out_{key}", runner, workers))
                print(f"{runner} x{workers}: {runs[key][-1][0]:.1f} s wall, {runs[key][-1][1]:.1f} CPU-s", flush=True)
        for runner in ("local", "beam"):
            key = f"{runner}_1_quarter"
            runs.setdefault(key, []).append(run(folder, quarter, work / f"out_{key}", runner, 1))
            print(f"{runner} x1, {args.images // 4} images: {runs[key][-1][1]:.1f} CPU-s", flush=True)
    walls = {k: min(w for w, _ in v) for k, v in runs.items()}
    cpus = {k: min(c for _, c in v) for k, v in runs.items()}
    n = args.images
    result = {
        "images": n, "source_size": [args.width, args.height], "cpus": os.cpu_count(),
        "python": platform.python_version(), "repeats": args.repeats,
        "load_average_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "machine_note": "shared 2-core machine, loaded by other engineers' jobs during this run: ratios from this "
                        "one run only; absolute rates are not representative",
        "runs": {k: [[round(w, 2), round(c, 2)] for w, c in v] for k, v in runs.items()},
        "wall_s": {k: round(v, 2) for k, v in walls.items()},
        "images_per_s": {k: round(n / v, 1) for k, v in walls.items()},
        "beam_over_local_wall": {w: round(walls[f"beam_{w}"] / walls[f"local_{w}"], 2) for w in (1, 2)},
        "speedup_2_workers": {r: round(walls[f"{r}_1"] / walls[f"{r}_2"], 2) for r in ("local", "beam")},
        "cpu_s_per_image": {k: round(v / n, 4) for k, v in cpus.items()},
        "beam_over_local_cpu": {w: round(cpus[f"beam_{w}"] / cpus[f"local_{w}"], 2) for w in (1, 2)},
    }
    marginal = {r: round((cpus[f"{r}_1"] - cpus[f"{r}_1_quarter"]) / (n - n // 4), 4) for r in ("local", "beam")}
    result["marginal_cpu_s_per_image"] = marginal
    result["fixed_cpu_s"] = {r: round(cpus[f"{r}_1"] - marginal[r] * n, 1) for r in ("local", "beam")}
    per_image = marginal["beam"]
    result["dataflow_projection"] = projection(per_image)
    p = result["dataflow_projection"]
    rows = "\n".join(f"| {k.replace('_1_quarter', ' x1, ' + str(n // 4) + ' images').replace('_', ' x')} | "
                     f"{walls[k]:.1f} | {round((n // 4 if 'quarter' in k else n) / walls[k], 1)} | "
                     f"{round(cpus[k] / (n // 4 if 'quarter' in k else n), 4)} |" for k in walls)
    markdown = f"""# prepare_scaling

`prepare --runner beam` (DirectRunner, multi_processing) vs the local runner, whole prepare job,
{n} generated {args.width}x{args.height} JPEGs, same run, best of {args.repeats} interleaved runs; 1-min load
average {load_start} at start, {result['load_average_1min']['end']} at end. {result['machine_note']}.

| run | wall s | images/s | CPU-s per image (all processes) |
| --- | --- | --- | --- |
{rows}

- Beam wall / local wall: {result['beam_over_local_wall'][1]}x at 1 worker, {result['beam_over_local_wall'][2]}x at 2.
- 2-worker speed-up: local {result['speedup_2_workers']['local']}x, Beam {result['speedup_2_workers']['beam']}x.
- Beam CPU / local CPU: {result['beam_over_local_cpu'][1]}x at 1 worker, {result['beam_over_local_cpu'][2]}x at 2.
- Marginal CPU per image (full run minus the quarter run, 1 worker): local {marginal['local']} s, Beam
  {marginal['beam']} s ({round(marginal['beam'] / marginal['local'], 2)}x); fixed cost per run: local
  {result['fixed_cpu_s']['local']} CPU-s, Beam {result['fixed_cpu_s']['beam']} CPU-s (worker start-up,
  TensorFlow import).

## Projection: all of Snapshot Serengeti on Dataflow (not run; from the per-image cost above)

{p['images_decoded']:,} non-empty images decoded ({p['metadata_rows']:,} metadata rows filtered on the launcher)
x {per_image} CPU-s (Beam's marginal cost per image here) = {p['vcpu_hours']} vCPU-hours. On {p['workers']} x
{p['worker']['type']} ({p['workers'] * p['worker']['vcpus']} vCPUs): ~{p['image_stage_minutes']} min of image
work, ~{p['wall_minutes_with_startup']} min with job start-up. Cost ~${p['total_usd']}
(vCPU ${p['cost_usd']['vcpu']}, memory ${p['cost_usd']['memory']}, shuffle ${p['cost_usd']['shuffle']} for
{p['shuffle_gb']} GB). Assumptions (all labelled ASSUMPTION in the script): vCPU ${ASSUMED_VCPU_HOUR_USD}/h,
memory ${ASSUMED_GB_HOUR_USD}/GB-h, shuffle ${ASSUMED_SHUFFLE_GB_USD}/GB, ~{ASSUMED_STORED_KB} KB per stored image,
{ASSUMED_STARTUP_MIN} min start-up, a Dataflow vCPU as fast as a core here, source images read in the bucket's
region (no egress charge), the launcher's metadata read/filter/split not included.
"""
    write_results("prepare_scaling", result, markdown)


if __name__ == "__main__":
    main()
