"""Benchmark: `predict`'s peak memory and speed vs a plain load-everything-then-predict script.

Each measurement runs in a fresh child process and reports its peak RSS (ru_maxrss):
  - predict: `predict.predict_images` (batches of --batch-size, rows streamed to a work file)
  - plain:   load every image (same decode: images.load_image + pipeline.eval_transform), stack
             them into one array, then `model.predict(batch_size=...)` and write one CSV.
Both run on N1 and N2 generated 1024x768 photo-like JPEGs. Bounded memory means predict's peak
grows little from N1 to N2, while plain grows by about N * S * S * 3 * 4 bytes (S = input side).
The model is a tiny CNN with a 224-pixel input (the paper's size) so that the run stays short:
the memory being measured is the input side, not the network.

Usage: python benchmarks/predict_memory.py [--sizes 200 800] [--batch-size 32]
Writes benchmarks/results/predict_memory.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import write_results

INPUT_SIZE = 224
STORED_SIZE = 256
CLASSES = [f"species{i:02d}" for i in range(52)]


def generate(folder: Path, count: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"img_{i:05d}.jpg"
        if path.exists():
            continue
        rng = np.random.default_rng(i)
        low = rng.integers(0, 255, (13, 17, 3), np.uint8)
        image = np.asarray(Image.fromarray(low).resize((1024, 768), Image.Resampling.BICUBIC), dtype=np.int16)
        image += rng.integers(-12, 13, image.shape, dtype=np.int16)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_run(run: Path) -> None:
    from serengeti_tf.testing import write_tiny_run

    # A bigger first stride than the tests' model: the benchmark measures the input path, not the model.
    write_tiny_run(run, CLASSES, input_size=INPUT_SIZE, stored_size=STORED_SIZE, conv=(8, 7, 4))


def child(mode: str, run: Path, files: list[Path], out: Path, batch_size: int) -> dict:
    """Runs one measurement in this (fresh) process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    if mode == "predict":
        from serengeti_tf.evaluate.predict import predict_images

        predict_images(run, [str(f) for f in files], out, top_k=5, batch_size=batch_size)
    else:
        import pandas as pd

        from serengeti_tf.data import images, pipeline
        from serengeti_tf.evaluate.evaluation import softmax, top_k_frame
        from serengeti_tf.models.resnet import load_model

        model = load_model(run / "model.keras")
        batch = np.stack([np.asarray(pipeline.eval_transform(images.load_image(f, STORED_SIZE), INPUT_SIZE))
                          for f in files])
        probs = softmax(model.predict(batch, batch_size=batch_size, verbose=0))
        frame = pd.concat([pd.DataFrame({"path": [str(f) for f in files]}), top_k_frame(probs, CLASSES, 5)], axis=1)
        frame.to_csv(out, index=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[200, 800])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "RUN", "N", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, run, n, folder = args.child
        files = sorted(Path(folder).glob("img_*.jpg"))[: int(n)]
        out = Path(tempfile.mkdtemp()) / "out.csv"
        print(json.dumps(child(mode, Path(run), files, out, args.batch_size)))
        return

    root = Path(tempfile.mkdtemp(prefix="predict-bench-"))
    generate(root / "images", max(args.sizes))
    make_run(root / "run")
    results: dict = {}
    for mode in ("predict", "plain"):
        for n in args.sizes:
            proc = subprocess.run([sys.executable, __file__, "--batch-size", str(args.batch_size), "--child", mode,
                                   str(root / "run"), str(n), str(root / "images")],
                                  capture_output=True, text=True, check=True)
            measured = json.loads(proc.stdout.strip().splitlines()[-1])
            measured["images_per_second"] = n / measured["seconds"]
            results[f"{mode}_{n}"] = {k: round(v, 2) for k, v in measured.items()}
            print(mode, n, results[f"{mode}_{n}"], flush=True)
    n1, n2 = args.sizes
    growth = {m: (results[f"{m}_{n2}"]["peak_rss_mb"] - results[f"{m}_{n1}"]["peak_rss_mb"]) / (n2 - n1) * 1024
              for m in ("predict", "plain")}
    summary = {
        "sizes": args.sizes, "batch_size": args.batch_size, "input_size": INPUT_SIZE, "stored_size": STORED_SIZE,
        "source_images": "1024x768 JPEG", "results": results,
        "rss_growth_kb_per_image": {m: round(v, 1) for m, v in growth.items()},
        "peak_rss_ratio_plain_over_predict_at_n2": round(results[f"plain_{n2}"]["peak_rss_mb"]
                                                        / results[f"predict_{n2}"]["peak_rss_mb"], 2),
        "speed_ratio_predict_over_plain_at_n2": round(results[f"predict_{n2}"]["images_per_second"]
                                                      / results[f"plain_{n2}"]["images_per_second"], 2),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    rows = "\n".join(f"| {m} | {n} | {results[f'{m}_{n}']['peak_rss_mb']} | "
                     f"{results[f'{m}_{n}']['images_per_second']} |"
                     for m in ("predict", "plain") for n in args.sizes)
    md = (f"# `predict`: peak memory and speed vs load-everything-then-predict\n\n"
          f"{n1} and {n2} generated 1024x768 JPEGs, stored size {STORED_SIZE}, input {INPUT_SIZE}, batch "
          f"{args.batch_size}, tiny CNN, {os.cpu_count()} shared CPU cores. Each row is a fresh process; "
          f"times include importing TensorFlow and loading the model.\n\n"
          f"| method | images | peak RSS (MB) | images/s |\n| --- | --- | --- | --- |\n{rows}\n\n"
          f"RSS growth per extra image: predict {summary['rss_growth_kb_per_image']['predict']} KB, "
          f"plain {summary['rss_growth_kb_per_image']['plain']} KB "
          f"(one {INPUT_SIZE}x{INPUT_SIZE}x3 float32 view is {INPUT_SIZE * INPUT_SIZE * 3 * 4 / 1024:.0f} KB).\n"
          f"Peak RSS plain/predict at {n2} images: {summary['peak_rss_ratio_plain_over_predict_at_n2']}x; "
          f"speed predict/plain: {summary['speed_ratio_predict_over_plain_at_n2']}x.\n")
    write_results("predict_memory", summary, md)


if __name__ == "__main__":
    main()
