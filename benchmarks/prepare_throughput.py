"""Benchmark: `prepare`'s image stage vs plain loops, and its peak memory vs the number of images.

Throughput (same run, same number of processes, same generated full-size 2048x1536 JPEGs):
  - full_decode: a plain process-pool loop doing full-size decode + resize + JPEG encode (no DCT scaling)
  - dct_loop:    a plain process-pool loop doing draft (DCT-scaled) decode + resize + encode
  - image_stage: `shards.write_shards` (what `serengeti-tf prepare` runs per image: draft decode, EXIF
                 orientation, RGB, resize, encode, TFRecord serialisation, per-shard temp + rename,
                 done records, progress bookkeeping), into a fresh folder.
  - prepare:     the whole `prepare_dataset` job on a plain-CSV source listing the same images (read,
                 filter incl. the missing-file check, split, shards, TFDS metadata, CSV/PNG/JSON outputs),
                 into a fresh folder. The targets are checked on this one.
Targets (issue 2): prepare >= 2x faster per core than full_decode; prepare overhead over dct_loop <= 20%.

Memory: peak RSS of the whole process tree (parent + workers, sampled from /proc) while
`write_shards` prepares N1 and N2 images (default 1k and 4k, smaller 640x480 sources to keep the
run short: the per-image work changes, the memory behaviour being measured does not). Flat means
the N2 peak is close to the N1 peak.

Usage: python benchmarks/prepare_throughput.py [--images 2000] [--workers 0] [--rss-sizes 1000 4000]
Writes benchmarks/results/prepare_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import write_results
from PIL import Image

SHORT_SIDE = 256
QUALITY = 90


# ---------------------------------------------------------------- generated sources
def _make_image(args: tuple[str, int, int, int]) -> None:
    """A photo-like JPEG: smooth random shapes plus sensor-like noise (not a flat colour)."""
    path, seed, width, height = args
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 255, (height // 64 + 1, width // 64 + 1, 3), np.uint8)
    image = Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.int16)
    array += rng.integers(-12, 13, array.shape, dtype=np.int16)  # texture the encoder has to keep
    Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(path, quality=92)


def generate(folder: Path, count: int, width: int, height: int, workers: int, prefix: str = "img") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{prefix}_{i:05d}.jpg" for i in range(count)]
    todo = [(str(folder / n), i, width, height) for i, n in enumerate(names) if not (folder / n).exists()]
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_make_image, todo, chunksize=8))
    return names


# ---------------------------------------------------------------- plain baselines
def _full_decode_chunk(paths: list[str]) -> int:
    total = 0
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")  # full-resolution decode
        width, height = image.size
        scale = SHORT_SIDE / min(width, height)
        image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC)
        import io

        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=QUALITY)
        total += len(buffer.getvalue())
    return total


def _dct_chunk(paths: list[str]) -> int:
    total = 0
    for path in paths:
        with Image.open(path) as image:
            width, height = image.size
            scale = SHORT_SIDE / min(width, height)
            size = (round(width * scale), round(height * scale))
            image.draft("RGB", size)
            image = image.convert("RGB")
        image = image.resize(size, Image.Resampling.BICUBIC)
        import io

        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=QUALITY)
        total += len(buffer.getvalue())
    return total


def run_pool(func, paths: list[str], workers: int, chunk: int = 8) -> float:
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(func, chunks[:workers]))  # warm the workers (imports) outside the timing
        start = time.perf_counter()
        list(pool.map(func, chunks))
        return time.perf_counter() - start


# ---------------------------------------------------------------- prepare's image stage
def _manifest(names: list[str]):
    import pandas as pd

    classes = ["aardvark", "buffalo", "zebra"]
    rows = [dict(path=n, species=classes[i % 3], capture_id=f"c{i // 3}", site="s1", datetime="", season="S9",
                 frame=i % 3 + 1, source="bench", drop_reason="",
                 split="val" if i % 10 == 8 else "test" if i % 10 == 9 else "train") for i, n in enumerate(names)]
    return pd.DataFrame(rows), classes


def run_prepare(folder: Path, names: list[str], workers: int, out: Path) -> float:
    from serengeti_tf.config import DataConfig
    from serengeti_tf.data import shards

    manifest, classes = _manifest(names)
    data = DataConfig(image_root=str(folder), image_size=SHORT_SIDE, jpeg_quality=QUALITY, workers=workers,
                      shard_size=256)
    plans = shards.plan_shards(manifest, classes, data.shard_size, data.seed)
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    shards.write_shards(manifest, plans, classes, data, out, progress=False)
    return time.perf_counter() - start


def run_prepare_full(folder: Path, names: list[str], workers: int, out: Path) -> float:
    from serengeti_tf import config as cfg
    from serengeti_tf.data.prepare import prepare_dataset

    manifest, _ = _manifest(names)
    labels = folder.parent / f"{folder.name}_labels.csv"
    manifest.rename(columns={"species": "label", "capture_id": "capture"})[
        ["path", "label", "capture", "site"]].to_csv(labels, index=False)
    config = cfg.resolve(updates=[{"data": {"metadata": [str(labels)], "image_root": str(folder),
                                            "image_size": SHORT_SIDE, "jpeg_quality": QUALITY,
                                            "workers": workers, "shard_size": 256}}])
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    prepare_dataset(config, out, progress=False)
    return time.perf_counter() - start


# ---------------------------------------------------------------- memory
def _tree_rss_bytes(root_pid: int) -> int:
    """Sum of VmRSS over `root_pid` and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        parents[int(entry)] = int(fields.get("PPid", "0").strip())
        rss[int(entry)] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024 if "VmRSS" in fields else 0
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        pid = frontier.pop()
        children = [p for p, pp in parents.items() if pp == pid]
        tree.update(children)
        frontier += children
    return sum(rss.get(p, 0) for p in tree)


def measure_peak_rss(func, *args) -> tuple[float, int]:
    """Runs func(*args) while sampling the process tree's RSS every 50 ms; returns (seconds, peak bytes)."""
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_bytes(os.getpid()))
            done.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        seconds = func(*args)
    finally:
        done.set()
        thread.join()
    return seconds, peak[0]


# ---------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="full-size JPEGs for the throughput part")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1536)
    parser.add_argument("--workers", type=int, default=0, help="processes for every variant (0 = every core)")
    parser.add_argument("--rss-sizes", type=int, nargs=2, default=[1000, 4000])
    parser.add_argument("--rss-width", type=int, default=640)
    parser.add_argument("--rss-height", type=int, default=480)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "serengeti_tf_bench_prepare",
                        help="folder for generated sources (reused between runs)")
    args = parser.parse_args()

    from serengeti_tf.data.shards import resolve_workers

    workers = resolve_workers(args.workers)
    full_dir = args.cache / f"full_{args.width}x{args.height}"
    tick = time.perf_counter()
    names = generate(full_dir, args.images, args.width, args.height, workers)
    generation_s = time.perf_counter() - tick
    paths = [str(full_dir / n) for n in names]
    mean_bytes = float(np.mean([os.path.getsize(p) for p in paths[:200]]))
    print(f"{len(paths)} sources of {args.width}x{args.height} ready ({generation_s:.0f} s), "
          f"mean {mean_bytes / 1e6:.2f} MB; {workers} processes", flush=True)

    import tensorflow  # noqa: F401  - imported once up front, as the CLI has it before any image work

    timings = {}
    out = args.cache / "out"
    load_before = os.getloadavg()
    # Interleave the variants twice and keep each one's best time: the machine is shared.
    for _ in range(2):
        for name, run in (("full_decode", lambda: run_pool(_full_decode_chunk, paths, workers)),
                          ("dct_loop", lambda: run_pool(_dct_chunk, paths, workers)),
                          ("image_stage", lambda: run_prepare(full_dir, names, workers, out)),
                          ("prepare", lambda: run_prepare_full(full_dir, names, workers, out))):
            seconds = run()
            timings[name] = min(seconds, timings.get(name, float("inf")))
            print(f"  {name:12s} {seconds:7.1f} s  {len(paths) / seconds:7.1f} img/s", flush=True)
    throughput = {k: {"seconds": round(v, 2), "images_per_s": round(len(paths) / v, 1),
                      "images_per_s_per_core": round(len(paths) / v / workers, 1)} for k, v in timings.items()}
    speedup = timings["full_decode"] / timings["prepare"]
    overhead = timings["prepare"] / timings["dct_loop"] - 1

    rss = {}
    small_dir = args.cache / f"small_{args.rss_width}x{args.rss_height}"
    small_names = generate(small_dir, max(args.rss_sizes), args.rss_width, args.rss_height, workers, "s")
    for count in args.rss_sizes:
        seconds, peak = measure_peak_rss(run_prepare, small_dir, small_names[:count], workers, args.cache / "rss_out")
        rss[str(count)] = {"peak_rss_mb": round(peak / 2**20, 1), "seconds": round(seconds, 1)}
        print(f"  rss {count:6d} images: peak {peak / 2**20:.0f} MB ({seconds:.1f} s)", flush=True)
    counts = sorted(args.rss_sizes)
    rss_growth = rss[str(counts[1])]["peak_rss_mb"] / rss[str(counts[0])]["peak_rss_mb"] - 1
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(args.cache / "rss_out", ignore_errors=True)

    result = {
        "benchmark": "prepare_throughput",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus_usable": resolve_workers(0), "python": platform.python_version(),
                    "load_average_1_5_15_before": [round(x, 2) for x in load_before],
                    "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
                    "note": "shared machine: other jobs were running; each variant's best of 2 interleaved runs"},
        "sizes": {"images": len(paths), "source_size": f"{args.width}x{args.height}",
                  "mean_source_mb": round(mean_bytes / 1e6, 2), "stored_short_side": SHORT_SIDE,
                  "jpeg_quality": QUALITY, "processes": workers},
        "throughput": throughput,
        "prepare_vs_full_decode_per_core": round(speedup, 2),
        "prepare_overhead_vs_dct_loop": round(overhead, 3),
        "targets": {"speedup_per_core_min": 2.0, "overhead_max": 0.20,
                    "speedup_met": speedup >= 2.0, "overhead_met": overhead <= 0.20},
        "rss": {"source_size": f"{args.rss_width}x{args.rss_height}", "by_images": rss,
                "note": "parent (with TensorFlow imported, ~0.7 GB of it) + worker processes, sampled every 50 ms",
                "growth_from_first_to_second": round(rss_growth, 3)},
    }
    write_results("prepare_throughput", result, markdown(result))


def markdown(r: dict) -> str:
    t = r["throughput"]
    lines = [
        "# prepare throughput",
        "",
        f"{r['date_utc']}; {r['sizes']['images']} generated {r['sizes']['source_size']} JPEGs "
        f"(mean {r['sizes']['mean_source_mb']} MB) -> short side {r['sizes']['stored_short_side']}, "
        f"{r['sizes']['processes']} processes for every variant. {r['machine']['note']} "
        f"(load average before/after: {r['machine']['load_average_1_5_15_before'][0]}/"
        f"{r['machine']['load_average_1_5_15_after'][0]}).",
        "",
        "| variant | seconds | images/s | images/s per core |",
        "| --- | ---: | ---: | ---: |",
    ]
    labels = {"full_decode": "plain loop, full-size decode + resize + encode",
              "dct_loop": "plain loop, DCT-scaled (draft) decode + resize + encode",
              "image_stage": "prepare's image stage alone (`shards.write_shards`)",
              "prepare": "whole `prepare_dataset` job (CSV source -> all outputs)"}
    for key in ("full_decode", "dct_loop", "image_stage", "prepare"):
        lines.append(f"| {labels[key]} | {t[key]['seconds']} | {t[key]['images_per_s']} | "
                     f"{t[key]['images_per_s_per_core']} |")
    targets = r["targets"]
    lines += [
        "",
        f"- prepare vs full-size decoding, per core: **{r['prepare_vs_full_decode_per_core']}x** "
        f"(target >= 2x: {'met' if targets['speedup_met'] else 'NOT met'})",
        f"- prepare overhead over the plain DCT-scaled loop: **{r['prepare_overhead_vs_dct_loop'] * 100:.1f}%** "
        f"(target <= 20%: {'met' if targets['overhead_met'] else 'NOT met'})",
        "",
        f"Peak RSS of the process tree while `write_shards` runs, {r['rss']['source_size']} sources "
        f"(smaller than full size to keep the run short; {r['rss']['note']}):",
        "",
        "| images | peak RSS (MB) | seconds |",
        "| ---: | ---: | ---: |",
    ]
    for count, row in r["rss"]["by_images"].items():
        lines.append(f"| {count} | {row['peak_rss_mb']} | {row['seconds']} |")
    lines += ["", f"Growth of the peak from the smaller to the larger run: "
                  f"{r['rss']['growth_from_first_to_second'] * 100:.1f}%.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
