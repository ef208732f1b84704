"""Proof that a restructure left the outputs alone: the sha256 of every output file of a fixed pipeline.

Runs, through the command line only (child processes of this Python, so the installed tree decides
what runs; the script imports nothing of serengeti_tf and works on any checkout):

    demo-data (seed 0, scale 0.003, 64x48 px)  ->  prepare (36 px, seed 0, 1 worker)
    -> train --phase 1 --sampler ros  ->  train --phase 2 --init <phase 1>  ->  evaluate --per-class
    -> experiment (samplers none,ros; 1 seed; 1 epoch)

with tiny settings (32 px input, batch 16, 3 steps an epoch, 2 validation steps, 50 bootstrap
resamples) in CPU-only, deterministic mode (`CUDA_VISIBLE_DEVICES=""`, `TF_DETERMINISTIC_OPS=1`,
`PYTHONHASHSEED=0`, `sampler.deterministic=true`; the toolkit seeds Keras itself from train.seed),
then writes a manifest {relative path: sha256} of every file under the work folder's outputs.

Normalisation rules (each for a value that legitimately differs between two runs of the same code;
everything else is digested byte for byte):
  1. Text files (.json .csv .yaml .md .txt, the `.serengeti-tf-files` lists): the absolute work
     folder is replaced by `<work>` (configs and lineage record absolute paths).
  2. `timings.json`: the wall-time keys `epoch_seconds`, `train_seconds`, `feature_seconds`,
     `this_session_seconds` are dropped.
  3. `checkpoints/state*.json`: the `seconds` of each `history` entry is dropped (epoch wall time).
  4. `metrics.csv` of a run: the `seconds` column is dropped (epoch wall time).
  5. prepare's `summary.json`: the `timings` entry is dropped (stage wall times).
  6. Zip containers (`.keras` models and checkpoints, `.npz` feature caches): the digest is over
     the members' names and contents, not the zip (its member dates are the save time); in a
     `.keras` the `date_saved` of `metadata.json` is dropped and the `shared_object_id`s of
     `config.json` (Python `id()`s of objects shared by layers, a memory address) are renumbered
     in order of appearance.
  7. TensorBoard event files (`tensorboard/events.out.tfevents.<time>.<host>.<pid>...`): listed as
     `tensorboard/events` and digested over their records with `wall_time` zeroed.
  8. A file's raw sha256 recorded elsewhere (lineage `init_model_sha256`, eval `model_sha256`, a
     feature cache's `source_sha256`) changes with the `.keras` file's save time (rule 6): every
     raw sha256 of a `.keras` file under the work folder is replaced, in text files and in zip
     members (ASCII or numpy's UTF-32), by that file's rule-6 digest (same length).
`versions.json` is digested as is: both runs must use the same environment (same venv packages),
and a different version there is a real difference. The console output is not digested (it prints
wall times and an ETA); it is kept beside the outputs as `<work>/logs/<step>.txt`.

Usage:
    python benchmarks/output_identity.py --digests DIGESTS.json [--work DIR [--digest-only]]
    python benchmarks/output_identity.py --compare A.json B.json

The first runs the pipeline into DIR (default: a fresh temporary folder, removed afterwards) and
writes the manifest (`--digest-only`: digests a kept work folder again, running nothing). Run it
with the Python of the environment to test (e.g. a venv holding the "before" tree installed
editable). The second prints identical / differing / missing files and exits 1 when any file
differs or is missing on one side. About 1.5 minutes on two idle CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

TEXT_SUFFIXES = {".json", ".csv", ".yaml", ".md", ".txt", ".serengeti-tf-files"}
TIMING_KEYS = ("epoch_seconds", "train_seconds", "feature_seconds", "this_session_seconds")
TRAIN = ["--set", "train.steps_per_epoch=3", "--set", "train.validation_steps=2",
         "--set", "sampler.deterministic=true", "--set", "sampler.shuffle_buffer=64"]
TINY = ["--set", "model.input_size=32", "--set", "train.batch_size=16", "--set", "eval.bootstrap_samples=50"]
OUTPUTS = ("src", "prepared", "runs", "experiment")  # the work folder's output folders (logs/ is not one)


def steps(work: Path) -> list[tuple[str, list[str]]]:
    """The fixed pipeline: (step name, serengeti-tf arguments)."""
    return [
        ("demo-data", ["demo-data", str(work / "src"), "--scale", "0.003", "--size", "64x48", "--seed", "0"]),
        ("prepare", ["prepare", str(work / "prepared"), "--config", str(work / "src" / "config.yaml"),
                     "--image-size", "36", "--workers", "1", "--seed", "0"]),
        ("train-phase1", ["train", "--data", str(work / "prepared"), "--phase", "1", "--sampler", "ros",
                          "--run-dir", str(work / "runs" / "phase1"), "--epochs", "2", "--batch-size", "16",
                          "--input-size", "32", *TRAIN]),
        ("train-phase2", ["train", "--data", str(work / "prepared"), "--phase", "2",
                          "--init", str(work / "runs" / "phase1"), "--run-dir", str(work / "runs" / "phase2"),
                          "--epochs", "2", "--batch-size", "16", *TRAIN]),
        ("evaluate", ["evaluate", str(work / "runs" / "phase2"), "--per-class", "--bootstrap", "50"]),
        ("experiment", ["experiment", "--data", str(work / "prepared"), "-o", str(work / "experiment"),
                        "--samplers", "none,ros", "--seeds", "1", "--epochs", "1", *TINY, *TRAIN]),
    ]


def child_env() -> dict:
    """CPU only, deterministic ops, fixed hash seed, quiet TensorFlow."""
    return dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_DETERMINISTIC_OPS="1", PYTHONHASHSEED="0",
                TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def run_pipeline(work: Path) -> None:
    """Runs every step in `work`; stops with the step's output on the first failure."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name, args in steps(work):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "serengeti_tf_cli.main", *args], cwd=work,
                                env=child_env(), capture_output=True, text=True)
        (logs / f"{name}.txt").write_text(result.stdout + result.stderr)
        print(f"{name}: exit {result.returncode} ({time.perf_counter() - started:.0f}s)", flush=True)
        if result.returncode != 0:
            raise SystemExit(f"{name} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")


# ---- normalisation ----------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dumped(value) -> bytes:
    return json.dumps(value, indent=2, sort_keys=False).encode()


def normalised_json(relative: str, data: bytes) -> bytes:
    """Rules 2, 3 and 5; other JSON unchanged."""
    name = relative.rsplit("/", 1)[-1]
    if name == "timings.json":
        record = json.loads(data)
        return dumped({k: v for k, v in record.items() if k not in TIMING_KEYS})
    if name.startswith("state") and "/checkpoints/" in f"/{relative}":
        record = json.loads(data)
        for entry in record.get("history", []):
            entry.pop("seconds", None)
        return dumped(record)
    if relative == "prepared/summary.json":
        record = json.loads(data)
        record.pop("timings", None)
        return dumped(record)
    return data


def without_column(data: bytes, column: str) -> bytes:
    """The CSV without `column` (rule 4)."""
    rows = list(csv.reader(io.StringIO(data.decode())))
    if not rows or column not in rows[0]:
        return data
    drop = rows[0].index(column)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([r[:drop] + r[drop + 1:] for r in rows])
    return out.getvalue().encode()


def renumbered_shared_objects(value, numbers: dict) -> None:
    """Replaces each `shared_object_id` (a Python id()) by its order of first appearance, in place."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "shared_object_id":
                value[key] = numbers.setdefault(item, len(numbers))
            else:
                renumbered_shared_objects(item, numbers)
    elif isinstance(value, list):
        for item in value:
            renumbered_shared_objects(item, numbers)


def with_digests_replaced(data: bytes, model_digests: dict[str, str]) -> bytes:
    """Rule 8: each raw sha256 of a .keras file (ASCII or UTF-32-LE) replaced by its rule-6 digest."""
    for raw, normalised in model_digests.items():
        for encoding in ("ascii", "utf-32-le"):
            data = data.replace(raw.encode(encoding), normalised.encode(encoding))
    return data


def zip_digest(path: Path, model_digests: dict[str, str]) -> str:
    """Rule 6 (and 8 inside members): names and contents of the members."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for member in sorted(archive.namelist()):
            data = archive.read(member)
            if path.suffix == ".keras" and member in ("metadata.json", "config.json"):
                record = json.loads(data)
                if member == "metadata.json":
                    record.pop("date_saved", None)
                else:
                    renumbered_shared_objects(record, {})
                data = dumped(record)
            digest.update(member.encode() + b"\0" + sha256(with_digests_replaced(data, model_digests)).encode())
    return digest.hexdigest()


def event_records(path: Path):
    """The records of a TFRecord file (TensorBoard event files are TFRecords of `Event` protos)."""
    data = path.read_bytes()
    at = 0
    while at < len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        at += 12  # length and its crc
        yield data[at:at + length]
        at += length + 4  # record and its crc


def events_digest(path: Path) -> str:
    """Rule 7: every event with wall_time zeroed."""
    from tensorboard.compat.proto import event_pb2

    digest = hashlib.sha256()
    for record in event_records(path):
        event = event_pb2.Event.FromString(record)
        event.wall_time = 0.0
        digest.update(sha256(event.SerializeToString(deterministic=True)).encode())
    return digest.hexdigest()


def manifest_name(relative: str) -> str:
    """Rule 7's stable name for an event file (its name holds the time, host and process id)."""
    folder, _, name = relative.rpartition("/")
    if name.startswith("events.out.tfevents."):
        return f"{folder}/events"
    return relative


def file_digest(work: Path, path: Path, model_digests: dict[str, str]) -> str:
    relative = path.relative_to(work).as_posix()
    if path.suffix in (".keras", ".npz"):
        return zip_digest(path, model_digests)
    if path.name.startswith("events.out.tfevents."):
        return events_digest(path)
    data = path.read_bytes()
    if path.suffix in TEXT_SUFFIXES or path.name in TEXT_SUFFIXES:
        data = with_digests_replaced(data.replace(str(work).encode(), b"<work>"), model_digests)  # rules 1, 8
        if path.suffix == ".json":
            data = normalised_json(relative, data)
        elif path.name == "metrics.csv":
            data = without_column(data, "seconds")
    return sha256(data)


def manifest(work: Path) -> dict[str, str]:
    """{relative path (rule 7's name for event files): digest} of every output file, sorted."""
    models = {path: zip_digest(path, {}) for top in OUTPUTS for path in sorted((work / top).rglob("*.keras"))}
    model_digests = {sha256(path.read_bytes()): digest for path, digest in models.items()}
    digests: dict[str, str] = {}
    for top in OUTPUTS:
        for path in sorted((work / top).rglob("*")):
            if path.is_file():
                name = manifest_name(path.relative_to(work).as_posix())
                if name in digests:
                    raise SystemExit(f"two files map to {name}; extend manifest_name")
                digests[name] = models.get(path) or file_digest(work, path, model_digests)
    return dict(sorted(digests.items()))


# ---- compare ----------------------------------------------------------------------------------

def compare(a_path: Path, b_path: Path) -> int:
    for path in (a_path, b_path):
        if not path.is_file():
            raise SystemExit(f"error: no manifest at {path}")
    a, b = json.loads(a_path.read_text()), json.loads(b_path.read_text())
    same = sorted(k for k in a.keys() & b.keys() if a[k] == b[k])
    differ = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    print(f"identical: {len(same)} files")
    for title, names in ((f"differing: {len(differ)} files", differ),
                         (f"missing from {b_path}: {len(only_a)} files", only_a),
                         (f"missing from {a_path}: {len(only_b)} files", only_b)):
        print(title)
        for name in names:
            print(f"  {name}")
    return 1 if differ or only_a or only_b else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digests", type=Path, help="Write the manifest {path: sha256} here.")
    parser.add_argument("--work", type=Path, help="Work folder (must be empty or absent; kept afterwards).")
    parser.add_argument("--digest-only", action="store_true",
                        help="Only digest the outputs already in --work (a kept earlier run).")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="Compare two manifests.")
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if not args.digests:
        parser.error("give --digests FILE (run) or --compare A B")
    if args.digest_only and not (args.work and args.work.is_dir()):
        parser.error("--digest-only needs --work, an existing work folder")
    if args.work and args.work.exists() and any(args.work.iterdir()) and not args.digest_only:
        parser.error(f"--work {args.work} is not empty")
    work = (args.work or Path(tempfile.mkdtemp(prefix="output-identity-"))).resolve()
    try:
        if not args.digest_only:
            run_pipeline(work)
        digests = manifest(work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    args.digests.parent.mkdir(parents=True, exist_ok=True)
    args.digests.write_text(json.dumps(digests, indent=2) + "\n")
    print(f"{len(digests)} output files digested into {args.digests} "
          f"(python {sys.executable}, {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
