"""Benchmark: peak memory of the streaming COCO Camera Traps reader vs the file size and `json.load`.

Generates a COCO Camera Traps JSON in LILA's Snapshot Serengeti layout (images with seq_id,
frame_num, location, datetime; sequence-level annotations copied to every image, with LILA's bare
`NaN`; ~2% two-species captures) of at least `--megabytes` MB, written piecewise into a temp folder.
Then, each in a fresh subprocess so peaks do not mix:
  - import_only: imports pandas, ijson and the reader, loads Arrow strings (the reader's floor);
  - reader:      `sources.read_source` on the file (the full streamed read into the manifest);
  - json_load:   the plain baseline, `json.load` of the same file (accepts NaN), nothing else.
Peak RSS is the child's VmHWM (/proc; ru_maxrss elsewhere). Each generated file is deleted.
Target (issue 2): the reader's peak RSS well under the file's size.

Two sizes (default 220 and 440 MB) give the marginal RSS per MB of file, projected to the real file.

Usage: python benchmarks/coco_reader_memory.py [--megabytes 220 440]
Writes benchmarks/results/coco_reader_memory.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_results

SPECIES = ["wildebeest", "zebra", "gazellethomsons", "elephant", "buffalo", "warthog", "giraffe", "impala",
           "otherbird", "hartebeest", "empty", "human", "monkeyvervet", "rodents", "zorilla"]
SITES = [f"{row}{col:02d}" for row in "BCDEFGHIJKLMNOPQRSTUV" for col in range(1, 14)]

_CHILD = {
    # Imports plus pandas' Arrow string storage loaded (the reader's columns use it).
    "import_only": ("import pandas, ijson; import serengeti_tf.data.sources.coco_camera_traps; "
                    "import serengeti_tf.config; pandas.Series(['a'], dtype='str')"),
    "reader": ("from serengeti_tf.config import DataConfig; from serengeti_tf.data.sources import read_source; "
               "m = read_source(DataConfig(metadata=[PATH], image_root=ROOT)); "
               "OUT['rows'] = len(m); OUT['kept'] = int((m['drop_reason'] == '').sum()); "
               "OUT['manifest_mb'] = m.memory_usage(deep=True).sum() / 2**20"),
    "json_load": "import json; d = json.load(open(PATH)); OUT['rows'] = len(d['images'])",
}


def _image(i: int, capture: int, frame: int, frames: int, site: str) -> dict:
    path = f"S9/{site}/{site}_R1/S9_{site}_R1_IMAG{i:07d}"
    return {"id": path, "file_name": f"{path}.JPG", "frame_num": frame, "seq_id": f"SER_S9#{site}#1#{capture}",
            "width": 2048, "height": 1536, "corrupt": False, "location": site, "seq_num_frames": frames,
            "datetime": f"2014-03-{1 + capture % 28:02d} {capture % 24:02d}:14:{frame:02d}"}


def _annotation(image: dict, category: int, capture: int, site: str, nan: bool) -> dict:
    return {"sequence_level_annotation": True, "id": f"{image['id']}-{category}", "category_id": category,
            "seq_id": image["seq_id"], "season": "SER_S9", "site": site, "datetime": image["datetime"],
            "subject_id": 10_000_000 + capture, "count": "NAN" if nan else 1, "standing": 1.0, "resting": 0.0,
            "moving": 0.0, "interacting": 0.0, "young_present": 0.0, "image_id": image["id"]}


def generate(path: Path, megabytes: float) -> dict:
    """Writes images, then categories, then annotations (LILA's order), entry by entry.

    Annotations go to a side file first and are appended, so this process stays small too.
    """
    target = megabytes * 2**20
    image_count = capture = annotation_count = 0
    side = path.with_suffix(".annotations.tmp")
    with open(path, "w", encoding="utf-8") as f, open(side, "w", encoding="utf-8") as pending:
        f.write('{\n "info": {"version": "benchmark", "description": "generated"},\n "images": [\n')
        written = 0
        first = True
        while written < target * 0.42:  # images take ~42% of the file, annotations the rest
            site = SITES[capture % len(SITES)]
            frames = 1 + capture % 3
            labels = [capture % len(SPECIES)] + ([(capture + 1) % len(SPECIES)] if capture % 50 == 0 else [])
            for frame in range(1, frames + 1):
                image = _image(image_count, capture, frame, frames, site)
                text = json.dumps(image, indent=1)
                f.write(("" if first else ",\n") + text)
                first = False
                written += len(text)
                image_count += 1
                for category in labels:
                    text = json.dumps(_annotation(image, category, capture, site, capture % 7 == 0), indent=1)
                    pending.write(("" if annotation_count == 0 else ",\n") + text.replace('"NAN"', "NaN"))
                    annotation_count += 1
            capture += 1
        f.write('\n ],\n "categories": [\n')
        f.write(",\n".join(json.dumps({"id": i, "name": n}) for i, n in enumerate(SPECIES)))
        f.write('\n ],\n "annotations": [\n')
        pending.close()
        with open(side, encoding="utf-8") as source:
            shutil.copyfileobj(source, f)
        f.write("\n ]\n}\n")
    side.unlink()
    return {"images": image_count, "captures": capture, "annotations": annotation_count}


# VmHWM is this process's own high-water mark; ru_maxrss would carry over the parent's peak
# across fork + exec on Linux.
_PEAK_RSS = """
def peak_rss_mb():
    try:
        for line in open('/proc/self/status'):
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""


def run_child(kind: str, path: Path, root: Path) -> dict:
    code = (_PEAK_RSS + "import json, sys, time\nOUT = {}\nPATH, ROOT = sys.argv[1], sys.argv[2]\n"
            "start = time.perf_counter()\n" + _CHILD[kind] + "\n"
            "OUT['seconds'] = time.perf_counter() - start\n"
            "OUT['peak_rss_mb'] = peak_rss_mb()\n"
            "print(json.dumps(OUT))\n")
    done = subprocess.run([sys.executable, "-c", code, str(path), str(root)], capture_output=True, text=True,
                          check=True, env={**os.environ, "TQDM_DISABLE": "1"})
    return json.loads(done.stdout.strip().splitlines()[-1])


REAL_FILE_MB = 5.2 * 1024  # LILA's Snapshot Serengeti S1-11 COCO file


def measure(folder: Path, megabytes: float) -> dict:
    """Generates one file, runs the three variants on it, deletes the file."""
    path = folder / f"generated_coco_camera_traps_{megabytes:.0f}mb.json"
    start = time.perf_counter()
    generated = generate(path, megabytes)
    file_mb = path.stat().st_size / 2**20
    print(f"generated {file_mb:.0f} MB in {time.perf_counter() - start:.0f}s", flush=True)
    try:
        runs = {kind: run_child(kind, path, folder) for kind in ("import_only", "reader", "json_load")}
    finally:
        path.unlink()
    print(f"{file_mb:.0f} MB: {runs}", flush=True)
    reader, floor = runs["reader"]["peak_rss_mb"], runs["import_only"]["peak_rss_mb"]
    return {"file_mb": file_mb, "generated": generated, "runs": runs,
            "reader_peak_over_file": reader / file_mb,
            "reader_increment_over_file": (reader - floor) / file_mb,
            "reader_peak_over_json_load": reader / runs["json_load"]["peak_rss_mb"]}


def markdown(result: dict) -> str:
    lines = [
        "# COCO Camera Traps reader: peak memory",
        "",
        "Generated LILA-style COCO Camera Traps files (Snapshot Serengeti layout, sequence-level annotations, "
        "bare `NaN`s, ~2% two-species captures). Each variant runs in a fresh subprocess; peak RSS = VmHWM. "
        "`import_only` is the floor (Python + pandas + pyarrow + the reader imported); `json_load` is the plain "
        f"baseline (`json.load` of the same file, nothing else). {result['machine']}.",
        "",
        "| file (MB) | images | variant | peak RSS (MB) | peak RSS / file size | seconds |",
        "| ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for size in result["sizes"]:
        for name in ("import_only", "reader", "json_load"):
            run = size["runs"][name]
            lines.append(f"| {size['file_mb']:.0f} | {size['generated']['images']:,} | {name} | "
                         f"{run['peak_rss_mb']:.0f} | {run['peak_rss_mb'] / size['file_mb']:.2f} | "
                         f"{run['seconds']:.1f} |")
    lines.append("")
    for size in result["sizes"]:
        lines.append(f"- {size['file_mb']:.0f} MB file: reader peak / file size "
                     f"**{size['reader_peak_over_file']:.2f}** "
                     f"(above the import floor {size['reader_increment_over_file']:.2f}; the returned manifest "
                     f"itself is {size['runs']['reader']['manifest_mb']:.0f} MB of it); reader peak / json.load peak "
                     f"**{size['reader_peak_over_json_load']:.2f}**.")
    if "marginal_mb_per_file_mb" in result:
        lines.append(f"- Marginal peak RSS: {result['marginal_mb_per_file_mb']:.2f} MB per MB of file "
                     f"(json.load: {result['json_load_marginal_mb_per_file_mb']:.2f}); linear projection for the real "
                     f"5.2 GB file: reader ~{result['projected_real_file_peak_mb'] / 1024:.1f} GB peak, "
                     f"{result['projected_real_file_peak_mb'] / REAL_FILE_MB:.2f}x the file.")
    if "projected_real_file_peak_mb" in result:
        ratio = result["projected_real_file_peak_mb"] / REAL_FILE_MB
        verdict = "met" if ratio <= 0.5 else ("partly met (under the file size)" if ratio < 1 else "NOT met")
        lines.append(f"- Target (issue 2), peak RSS well under the file size: **{verdict}** "
                     f"(projected {ratio:.2f}x the real file; threshold used: 0.5x).")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, nargs="+", default=[220, 440],
                        help="sizes of the generated files (the first >= 200); two sizes give the marginal slope")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coco_bench_") as tmp:
        sizes = [measure(Path(tmp), mb) for mb in args.megabytes]
    # The temp folder (and every generated file) is gone here.
    result = {"sizes": sizes,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"}
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        span = large["file_mb"] - small["file_mb"]

        def slope(kind: str) -> float:
            return (large["runs"][kind]["peak_rss_mb"] - small["runs"][kind]["peak_rss_mb"]) / span

        result["marginal_mb_per_file_mb"] = slope("reader")
        result["json_load_marginal_mb_per_file_mb"] = slope("json_load")
        result["projected_real_file_peak_mb"] = (small["runs"]["reader"]["peak_rss_mb"]
                                                 + slope("reader") * (REAL_FILE_MB - small["file_mb"]))
    write_results("coco_reader_memory", result, markdown(result))


if __name__ == "__main__":
    main()
