"""Benchmark: detector-crop `prepare` vs whole-frame `prepare`, and the MD reader's peak memory.

Throughput (same run, same worker count, the same generated 2048x1536 photo-like JPEGs, each with
1-3 MD boxes: a third small (2-8% of the width, a far animal), the rest 15-60%):
  - whole_frame:   `prepare_dataset` on a plain CSV listing the images (one example per image)
  - crops:         the same plus `--detections` (one example per box; crops cut from a decode that
                   keeps the smallest crop's resolution, DCT draft only down to that)
  - crop_full_decode: a plain process-pool loop doing what a crop job without DCT draft would do:
                   full-size decode once per image, cut + resize + encode every box
Reported per core (images or crops per second / workers) and as ratios measured in the same run.

Memory: an MD batch-output file of >= 200 MB (generated: 2 boxes per image, some failures, some
bare NaN confidences) read by `detections.read_detections` and by `json.load`, each in a fresh
subprocess; peak RSS = VmHWM, minus nothing (an import-only child is reported as the floor).

Usage: python benchmarks/crop_prepare.py [--images 240] [--workers 0] [--md-mb 220]
Writes benchmarks/results/crop_prepare.json and .md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, write_results

HERE = Path(__file__).resolve().parent

SHORT_SIDE = 224
QUALITY = 90
WIDTH, HEIGHT = 2048, 1536


def boxes_for(seed: int) -> list[list[float]]:
    """1-3 normalised boxes; about a third of them small (far animals)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(rng.integers(1, 4))):
        w = float(rng.uniform(0.02, 0.08) if rng.random() < 1 / 3 else rng.uniform(0.15, 0.6))
        h = w * WIDTH / HEIGHT * float(rng.uniform(0.6, 1.2))
        h = min(h, 0.95)
        out.append([round(float(rng.uniform(0, 1 - w)), 4), round(float(rng.uniform(0, 1 - h)), 4), round(w, 4),
                    round(h, 4)])
    return out


def _full_decode_crops(task: tuple[str, list]) -> int:
    """Baseline: full-size decode once, then cut, resize (short side 224) and encode each box."""
    from PIL import Image

    from serengeti_tf.data.crops import crop_rectangle

    path, boxes = task
    total = 0
    with Image.open(path) as image:
        image = image.convert("RGB")
    for box in boxes:
        rect = crop_rectangle(box, image.width, image.height, 0.0, True)
        crop = image.crop(tuple(int(round(v)) for v in rect))
        scale = SHORT_SIDE / min(crop.size)
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                           Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=QUALITY)
        total += len(buffer.getvalue())
    return total


def throughput(folder: Path, count: int, workers: int) -> dict:
    import pandas as pd

    sys.path.insert(0, str(HERE))
    from prepare_throughput import generate  # the same photo-like generated JPEGs

    from serengeti_tf import config as cfg
    from serengeti_tf.data.detections import write_md_file
    from serengeti_tf.data.prepare import prepare_dataset
    from serengeti_tf.data.shards import resolve_workers

    workers = resolve_workers(workers)
    images_dir = folder / "images"
    started = time.perf_counter()
    names = generate(images_dir, count, WIDTH, HEIGHT, workers)
    generate_s = time.perf_counter() - started
    labels = [f"species{i % 4}" for i in range(count)]
    metadata = folder / "labels.csv"
    pd.DataFrame({"path": names, "label": labels, "capture": [f"c{i // 2}" for i in range(count)]}).to_csv(
        metadata, index=False)
    boxes = {name: boxes_for(i) for i, name in enumerate(names)}
    md = folder / "md.json"
    write_md_file(md, [{"file": n, "detections": [{"category": "1", "conf": 0.9, "bbox": b} for b in boxes[n]]}
                       for n in names])
    num_boxes = sum(len(b) for b in boxes.values())
    data = {"metadata": [str(metadata)], "image_root": str(images_dir), "image_size": SHORT_SIDE,
            "workers": workers, "crops": {"min_size": 8}}
    out: dict = {"images": count, "boxes": num_boxes, "workers": workers, "generate_s": round(generate_s, 1)}

    def run(name: str, updates: dict) -> None:
        target = folder / name
        tick = time.perf_counter()
        summary = prepare_dataset(cfg.resolve(updates=[{"data": updates}]), target, progress=False)
        seconds = time.perf_counter() - tick
        examples = summary.get("crops_kept", summary["images_kept"])
        out[name] = {"seconds": round(seconds, 2), "examples": examples,
                     "images_per_s_per_core": round(count / seconds / workers, 2),
                     "examples_per_s_per_core": round(examples / seconds / workers, 2),
                     "image_stage_s": round(summary["timings"]["shards_s"], 2),
                     "image_stage_images_per_s_per_core": round(count / summary["timings"]["shards_s"] / workers, 2)}

    import tensorflow  # noqa: F401  - imported before timing, so neither variant pays for it

    run("whole_frame", data)
    run("crops", {**data, "detections": str(md)})
    tick = time.perf_counter()
    tasks = [(str(images_dir / n), boxes[n]) for n in names]
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_full_decode_crops, tasks, chunksize=4))
    seconds = time.perf_counter() - tick
    out["crop_full_decode"] = {"seconds": round(seconds, 2), "examples": num_boxes,
                               "images_per_s_per_core": round(count / seconds / workers, 2),
                               "examples_per_s_per_core": round(num_boxes / seconds / workers, 2)}
    out["crops_over_whole_frame_images_per_s"] = round(
        out["crops"]["images_per_s_per_core"] / out["whole_frame"]["images_per_s_per_core"], 3)
    out["crops_over_whole_frame_image_stage"] = round(
        out["crops"]["image_stage_images_per_s_per_core"] / out["whole_frame"]["image_stage_images_per_s_per_core"], 3)
    out["crops_over_full_decode_crops_per_s"] = round(
        out["crops"]["examples_per_s_per_core"] / out["crop_full_decode"]["examples_per_s_per_core"], 3)
    return out


# ---------------------------------------------------------------- MD reader memory
def generate_md(path: Path, megabytes: float) -> dict:
    """Writes an MD file of about `megabytes` MB, streamed (never held in memory)."""
    rng = np.random.default_rng(0)
    target = megabytes * 1024 * 1024
    images = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"info": {"format_version": "1.4", "detector": "generated"},\n'
                ' "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},\n "images": [\n')
        while f.tell() < target:
            lines = []
            for _ in range(2000):
                name = (f"S{images % 11 + 1}/B{images % 97:02d}/B{images % 97:02d}_R{images % 13 + 1}/"
                        f"IMG_{images:08d}.JPG")
                if images % 500 == 7:
                    lines.append(json.dumps({"file": name, "failure": "Failure image access"}))
                else:
                    dets = []
                    for k in range(2):
                        conf = "NaN" if images % 997 == 3 and k == 1 else f"{rng.uniform(0.005, 0.99):.3f}"
                        box = ", ".join(f"{v:.4f}" for v in rng.uniform(0, 0.5, 4))
                        dets.append(f'{{"category": "{1 + k % 3}", "conf": {conf}, "bbox": [{box}]}}')
                    lines.append(f'{{"file": "{name}", "max_detection_conf": 0.9, "detections": [{", ".join(dets)}]}}')
                images += 1
            f.write(("" if images <= 2000 else ",\n") + ",\n".join(lines))
        f.write("\n ]\n}\n")
    return {"images": images}


_CHILD = {
    "import_only": "import serengeti_tf.data.detections, pandas, numpy, ijson",
    "reader": ("from serengeti_tf.data.detections import read_detections\n"
               "found = read_detections(PATH)\n"
               "OUT['images'] = len(found.images); OUT['boxes'] = len(found.boxes)\n"
               "OUT['result_mb'] = (found.images.memory_usage(deep=True).sum()"
               " + found.boxes.memory_usage(deep=True).sum()) / 2**20"),
    "json_load": ("import re\n"
                  "text = open(PATH, 'rb').read()\n"  # Python json accepts bare NaN
                  "data = json.loads(text)\n"
                  "OUT['images'] = len(data['images'])"),
}

_PEAK = """
def peak_rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
"""


def run_child(kind: str, path: Path) -> dict:
    code = (_PEAK + "import json, sys, time\nOUT = {}\nPATH = sys.argv[1]\nstart = time.perf_counter()\n"
            + _CHILD[kind] + "\nOUT['seconds'] = round(time.perf_counter() - start, 2)\n"
            "OUT['peak_rss_mb'] = round(peak_rss_mb(), 1)\nprint(json.dumps(OUT))\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def reader_memory(folder: Path, megabytes: float) -> dict:
    path = folder / "generated_md.json"
    generated = generate_md(path, megabytes)
    file_mb = path.stat().st_size / 2**20
    runs = {kind: run_child(kind, path) for kind in ("import_only", "reader", "json_load")}
    path.unlink()
    return {"file_mb": round(file_mb, 1), **generated, "runs": runs,
            "reader_peak_over_file": round(runs["reader"]["peak_rss_mb"] / file_mb, 3),
            "reader_peak_over_json_load": round(runs["reader"]["peak_rss_mb"] / runs["json_load"]["peak_rss_mb"], 3)}


def markdown(result: dict) -> str:
    t, m = result["throughput"], result["memory"]
    lines = ["# Detector crops: prepare throughput and MD reader memory", "",
             f"{t['images']} generated {WIDTH}x{HEIGHT} JPEGs with {t['boxes']} MD boxes (1-3 per image, a third "
             f"small), stored short side {SHORT_SIDE}, {t['workers']} worker processes on "
             f"{result['machine']}. Same run, same images.", "",
             "| variant | seconds | examples | images/s per core | examples/s per core |",
             "| --- | --- | --- | --- | --- |"]
    for name in ("whole_frame", "crops", "crop_full_decode"):
        r = t[name]
        lines.append(f"| {name} | {r['seconds']} | {r['examples']} | {r['images_per_s_per_core']} | "
                     f"{r['examples_per_s_per_core']} |")
    lines += ["",
              f"- crop prepare / whole-frame prepare, images per second per core: "
              f"**{t['crops_over_whole_frame_images_per_s']}** (whole job); image stage alone (decode, crop, "
              f"encode, TFRecords): **{t['crops_over_whole_frame_image_stage']}**",
              f"- crop prepare / plain full-decode crop loop, crops per second per core: "
              f"**{t['crops_over_full_decode_crops_per_s']}** (the plain loop does less bookkeeping: no "
              "TFRecords, manifest, split or outputs)", "",
              f"## MD reader peak memory ({m['file_mb']} MB file, {m['images']:,} images)", "",
              "| variant | peak RSS (MB) | seconds |", "| --- | --- | --- |"]
    for kind, run in m["runs"].items():
        lines.append(f"| {kind} | {run['peak_rss_mb']} | {run['seconds']} |")
    lines += ["", f"- reader peak / file size **{m['reader_peak_over_file']}**; reader peak / json.load peak "
              f"**{m['reader_peak_over_json_load']}**", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--md-mb", type=float, default=220)
    parser.add_argument("--parts", default="throughput,memory",
                        help="comma list; a part left out keeps its numbers from the last results JSON")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    previous_file = RESULTS / "crop_prepare.json"
    previous = json.loads(previous_file.read_text()) if previous_file.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="crop_bench_") as tmp:
        folder = Path(tmp)
        result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                  "throughput": (throughput(folder, args.images, args.workers) if "throughput" in parts
                                 else previous["throughput"]),
                  "memory": reader_memory(folder, args.md_mb) if "memory" in parts else previous["memory"]}
    write_results("crop_prepare", result, markdown(result))


if __name__ == "__main__":
    main()
