"""Bad invocations of every verb -> one `Error: ...` line naming the problem, exit code 2, no traceback.

One table for the whole CLI (issue 10): a row is (verb arguments, message fragment). Paths in the
arguments are templates filled from a small workspace: {src} (a tiny plain-CSV image source),
{ds} (a tiny prepared dataset), {bad_map} / {no_val} (prepared datasets with a corrupt class map
/ a missing val shard), {fake_run} (a run folder without a real model), {foreign} (a folder
holding a user's file), {file} (a plain file), {tmp}; the issue-19 ones are made by `write_hostile_inputs`.
A new verb joins by adding rows. Rows run in-process through Click's CliRunner against the
command group, so the exit code and message are exactly what the console script shows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import invoke_cli, tree_hashes
from PIL import Image

from serengeti_tf import config as cfg
from serengeti_tf.testing import write_tiny_dataset

SOURCE = "--metadata {src}/labels.csv --image-root {src} --image-size 24 --workers 1"

BAD_INVOCATIONS = [
    # -- outputs that would overwrite an input (data loss): refused with or without --overwrite
    ("prepare {src} " + SOURCE + " --overwrite", "is the input --image-root"),
    ("prepare {tmp} " + SOURCE + " --overwrite", "contains the input --image-root"),
    ("prepare {src}/prepared " + SOURCE, "lies inside the input --image-root"),
    ("train --data {ds} --run-dir {ds}/run --overwrite", "lies inside the input --data"),
    ("train --data {ds} --run-dir {ds} --overwrite", "is the input --data"),
    ("predict {ds} {src} -o {src}/predictions.csv --overwrite", "lies inside the input INPUT"),
    ("plan --counts {tmp}/counts/counts.csv -o {tmp}/counts --overwrite", "contains the input --counts"),
    ("compare {tmp}/run -o {tmp}/run/report --overwrite", "lies inside the input RUN_DIR"),
    ("evaluate {fake_run} --dataset-dir {fake_run}/eval --overwrite", "is the input --dataset-dir"),
    ("experiment {tmp}/experiment.yaml --data {ds} -o {ds}/experiment", "lies inside the input --data"),
    ("demo-data {foreign} --overwrite", "not written by serengeti-tf"),
    # -- paths that are not folders
    ("prepare {file}/sub " + SOURCE, "which is a file"),
    ("demo -o {file} --smoke", "is a file"),
    # -- values
    ("prepare {tmp}/out " + SOURCE + " --seasons ²", "expected season numbers"),
    ("prepare {tmp}/out " + SOURCE + " --seed -1", "data.seed must be an int in [0, 2**32 - 1]"),
    ("prepare {tmp}/out " + SOURCE + " --set data.seed=-1", "data.seed must be an int in [0, 2**32 - 1]"),
    ("prepare {tmp}/out " + SOURCE + " --set data.seed=4294967296", "data.seed must be an int in [0, 2**32 - 1]"),
    ("train --data {ds} --run-dir {tmp}/run2 --seed -1", "train.seed must be an int in [0, 2**32 - 1]"),
    # -- every seed has a rule: config keys name the key, CLI-only seeds (demo, demo-data) the option
    ("train --data {ds} --run-dir {tmp}/run5 --set train.seed=4294967296",
     "train.seed must be an int in [0, 2**32 - 1]"),
    ("plan --counts {tmp}/counts/counts.csv -o {tmp}/plan --set sampler.seed=-1",
     "sampler.seed must be an int in [0, 2**32 - 1]"),
    ("evaluate {fake_run} --set eval.seed=-1", "eval.seed must be an int in [0, 2**32 - 1]"),
    ("experiment {tmp}/experiment.yaml --data {ds} -o {tmp}/experiment --set data.seed=-1",
     "data.seed must be an int in [0, 2**32 - 1]"),
    ("experiment {tmp}/experiment.yaml --data {ds} -o {tmp}/experiment --seeds 0",
     "experiment.seeds must be an int in [1, 100]"),
    ("demo-data {tmp}/demo_data --seed -1", "Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295"),
    ("demo-data {tmp}/demo_data --seed 4294967296", "Invalid value for '--seed': 4294967296 is not in the range"),
    ("demo -o {tmp}/demo --smoke --seed -1", "Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295"),
    ("predict {ds} {src} -o {tmp}/p.csv --image-size 0", "--image-size must be an int in [16, 4096]"),
    ("predict {ds} {src} -o {tmp}/p.csv --image-size 100000", "--image-size must be an int in [16, 4096]"),
    ("predict {ds} {src} --detections {file} -o {src}/p.csv --overwrite", "lies inside the input INPUT"),
    ("predict {ds} {src} --detections {file} -o {tmp}/p.csv --image-size 0",
     "--image-size must be an int in [16, 4096]"),
    ("train --data {ds} --run-dir {fake_run} --init-weights {fake_run}/model.keras --overwrite",
     "contains the input --init-weights"),
    # -- damaged prepared datasets: named up front, not a traceback (or a failure after an epoch)
    ("train --data {bad_map} --run-dir {tmp}/run3", "class_map.json is not valid JSON"),
    ("train --data {no_val} --run-dir {tmp}/run4", "1 shard(s) missing or truncated"),
    # -- pretrained weights and exports
    ("train --data {ds} --run-dir {tmp}/run6 --init-weights {file}", "init weights: "),
    ("export {fake_run} -o {tmp}/export", "cannot load model"),
    ("export {tmp} -o {tmp}/export2", "export needs a finished training run folder with model.keras"),
    # -- issue 19. --overwrite never across kinds: {run} is a training run, {demo_data} a demo-data
    # folder (both recording their kind), {old_ds} a dataset written before kinds were recorded
    ("train --data {ds} --run-dir {demo_data} --overwrite", "holds a demo dataset (demo-data output), not a run;"),
    ("compare {tmp}/run -o {run} --overwrite", "holds a run (train output), not a report;"),
    ("demo-data {run} --overwrite", "holds a run (train output), not a demo dataset;"),
    ("plan --counts {tmp}/counts/counts.csv -o {old_ds} --overwrite", "holds a dataset (prepare output), not a plan;"),
    ("demo-data {old_ds} --overwrite", "holds a dataset (prepare output), not a demo dataset;"),
    ("export {fake_run} -o {run} --overwrite", "holds a run (train output), not an export;"),
    ("experiment {tmp}/experiment.yaml --data {ds} -o {run}", "holds a run (train output), not an experiment;"),
    ("demo -o {old_ds} --smoke", "holds a dataset (prepare output), not a demo;"),
    ("demo -o {foreign} --smoke", "not written by serengeti-tf"),
    # a copied output folder whose file list names the source images: nothing deleted anywhere
    ("plan --counts {tmp}/counts/counts.csv -o {tampered} --overwrite",
     "tampered/.serengeti-tf-files lists '../src/', which lies outside"),
    # -- files the user wrote are never replaced
    ("predict {fake_run} {src} -o {tmp}/my.csv --overwrite",
     "my.csv exists and was not written by serengeti-tf predict"),
    ("predict {fake_run} {src} -o {old_ds}/manifest.csv --overwrite",
     "manifest.csv exists and was not written by serengeti-tf predict"),
    # -- silent wrong exits
    ("experiment {tmp}/experiment.yaml --data {ds} -o {tmp}/experiment --samplers \x00",
     "experiment.samplers must be a non-empty list"),
    ("train --data {ds} --run-dir \x00", "Invalid value for '--run-dir': must not be empty"),
    ("plan --counts {tmp}/counts/counts.csv -o \x00", "Invalid value for '-o' / '--out': must not be empty"),
    ("predict {fake_run} {src} -o {tmp}/p.csv --classes {other_map}", "differ from the run"),
    ("evaluate {fake_run} --top-k 100000", "--top-k / eval.top_k is 100000 but the model has 2 classes"),
    ("train --data {ds} --run-dir {tmp}/run7 --batch-size 1000000000", "train.batch_size must be an int in [1, 65536]"),
    ("predict {fake_run} {src} -o {tmp}/p.csv --batch-size 1000000000", "eval.batch_size must be an int in [1, 65536]"),
    ("plan --counts {tmp}/counts_twice.csv -o {tmp}/plan2", "lists species 'zebra' more than once"),
    ("plan --counts {tmp}/counts_huge.csv -o {tmp}/plan3",
     "count must be a whole number in [0, 1,000,000,000,000], got '1e30'"),
    ("train --data {huge_map} --run-dir {tmp}/run8", "num_classes is 1000000000.0 but 2 classes are listed"),
    ("train --data {negative_map} --run-dir {tmp}/run9", "class indices must be 0..N-1"),
    ("demo-data {tmp}/demo_data2 --min-captures 1000000000", "min_captures_per_class must be an int in [1, 1000]"),
    # -- tracebacks before issue 19
    ("plan --counts {tmp}/counts/counts.csv -o {tmp}/plan4 --config {tmp}/latin1.yaml", "latin1.yaml is not UTF-8"),
    ("prepare {tmp}/out --metadata {lila}/images.csv --metadata {lila}/latin1_annotations.csv --image-root {src}",
     "latin1_annotations.csv is not UTF-8 text (it holds the byte 0xe8"),
    ("prepare {tmp}/out --metadata {lila}/images.csv --metadata {lila}/truncated_annotations.csv --image-root {src}",
     "truncated_annotations.csv looks truncated: its last line has 2 of 3 fields"),
    ("predict {fake_run} {tmp}/binary.txt -o {tmp}/p.csv", "binary.txt is not a UTF-8 text list of image paths"),
    ("predict {fake_run} {src} -o {tmp}/p.csv --captures {tmp}/binary.csv", "binary.csv is not a UTF-8 text list"),
    # an error while a progress bar is on screen starts on its own line (checked for every row)
    ("prepare {tmp}/out_md " + SOURCE + " --detections {tmp}/broken_md.json", "broken_md.json is not valid JSON"),
    # -- reads stay inside the image root
    ("prepare {tmp}/out " + SOURCE.replace("{src}", "{linked_src}").replace("{linked_src}/labels.csv",
                                                                            "{tmp}/outside_labels.csv"),
     "all dropped (outside_root 3); paths outside the image root are read only with --allow-outside-root"),
    ("predict {fake_run} {linked_src}/outside_list.txt -o {tmp}/p.csv", "3 listed image(s) lie outside"),
    ("predict {fake_run} {linked_src} -o {tmp}/p.csv", "1 listed image(s) lie outside"),  # linked.jpg
]


# Folders no refused command may change (issue 19: claimed folders of other kinds, a user's CSV).
PROTECTED = ("src", "ds", "foreign", "run", "demo_data", "old_ds", "linked_src", "tampered")


def terminal_view(line: str) -> str:
    """What a terminal shows of a line holding carriage returns (each later part overwrites from column 0)."""
    shown = ""
    for part in line.split("\r"):
        shown = part + shown[len(part):]
    return shown.rstrip()


def write_source(root: Path) -> None:
    """Four small JPEGs of two species and labels.csv (path, label)."""
    rng = np.random.default_rng(0)
    rows = []
    for species in ("zebra", "impala"):
        (root / species).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (20, 28, 3), np.uint8)).save(root / species / f"{i}.jpg")
            rows.append({"path": f"{species}/{i}.jpg", "label": species})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bad_input")
    write_source(tmp / "src")
    ds = write_tiny_dataset(tmp / "ds", {"a": 3, "b": 2}, image_size=24)
    bad_map = shutil.copytree(ds, tmp / "bad_map")
    (bad_map / "class_map.json").write_text('{"num_classes": 2, "cla')
    no_val = shutil.copytree(ds, tmp / "no_val")
    val_shard = json.loads((no_val / "shards.json").read_text())["val"][0]["file"]
    (no_val / val_shard).unlink()
    (tmp / "foreign").mkdir()
    (tmp / "foreign" / "notes.txt").write_text("the user's")
    (tmp / "file").write_text("a plain file")
    (tmp / "counts").mkdir()
    (tmp / "counts" / "counts.csv").write_text("species,count\nzebra,10\nimpala,3\n")
    (tmp / "run").mkdir()
    # A run folder whose evaluation folder is passed as its dataset (the model is never loaded).
    fake_run = tmp / "fake_run"
    shutil.copytree(ds, fake_run / "eval")
    shutil.copy(ds / "class_map.json", fake_run / "class_map.json")
    (fake_run / "model.keras").write_bytes(b"not loaded")
    (fake_run / "lineage.json").write_text(json.dumps({"phase": 1, "dataset_dir": str(ds)}))
    cfg.save_config(cfg.Config(), fake_run)
    (tmp / "experiment.yaml").write_text("train:\n  epochs: 1\n")
    return {"tmp": str(tmp), "src": str(tmp / "src"), "ds": str(ds), "bad_map": str(bad_map),
            "no_val": str(no_val), "foreign": str(tmp / "foreign"), "file": str(tmp / "file"),
            "fake_run": str(fake_run), **write_hostile_inputs(tmp, ds)}


def write_hostile_inputs(tmp: Path, ds: Path) -> dict[str, str]:
    """The issue-19 workspace: claimed folders of several kinds, a user's CSV, damaged class maps,
    non-UTF-8, binary and truncated files, metadata pointing outside the image root."""
    from serengeti_tf.io_utils import claim_output_dir, write_text

    claim_output_dir(tmp / "claimed_run", {"kind": "serengeti-tf train run", "config": {}}, kind="run")
    write_text(tmp / "claimed_run" / "model.keras", "weights")
    claim_output_dir(tmp / "demo_data", {"command": "demo-data", "seed": 0}, kind="demo dataset")
    write_text(tmp / "demo_data" / "README.txt", "synthetic")
    old_ds = tmp / "old_ds"  # as prepare wrote it before kinds: no kind line in the owned-files list
    old_ds.mkdir()
    (old_ds / "fingerprint.json").write_text(json.dumps({"prepare_format": 1, "image_root": "/x"}))
    (old_ds / ".serengeti-tf-files").write_text("fingerprint.json\nmanifest.csv\n")
    (old_ds / "manifest.csv").write_text("path,species\n")
    claim_output_dir(tmp / "tampered", {"command": "plan", "source": "x"}, kind="plan")
    write_text(tmp / "tampered" / "plan.csv", "ours")
    with open(tmp / "tampered" / ".serengeti-tf-files", "a") as log:
        log.write("../src/\n")
    (tmp / "my.csv").write_text("the user's own table\n")
    (tmp / "other_map.json").write_text(json.dumps({"num_classes": 2, "classes": [
        {"index": 0, "name": "b"}, {"index": 1, "name": "a"}]}))
    for name, content in (("huge_map", {"num_classes": 1e9}), ("negative_map", {"num_classes": 2, "classes": [
            {"index": -1, "name": "a"}, {"index": 1, "name": "b"}]})):
        copy = shutil.copytree(ds, tmp / name)
        content = {**json.loads((ds / "class_map.json").read_text()), **content}
        (copy / "class_map.json").write_text(json.dumps(content))
    (tmp / "counts_twice.csv").write_text("species,count\nzebra,10\nimpala,3\nzebra,2\n")
    (tmp / "counts_huge.csv").write_text("species,count\nzebra,1e30\nimpala,3\n")
    (tmp / "latin1.yaml").write_bytes("train:\n  epochs: 1  # r\xe9sum\xe9\n".encode("latin-1"))
    binary = bytes(range(256)) * 4
    (tmp / "binary.txt").write_bytes(binary)
    (tmp / "binary.csv").write_bytes(binary)
    lila = tmp / "lila"
    lila.mkdir()
    (lila / "images.csv").write_text("capture_id,image_rank_in_capture,image_path_rel\nc1,1,zebra/0.jpg\n")
    (lila / "latin1_annotations.csv").write_bytes("capture_id,question__species,season\nc1,z\xe8bre,S1\n"
                                                  .encode("latin-1"))
    (lila / "truncated_annotations.csv").write_text("capture_id,question__species,season\nc1,zebra,S1\nc2,gaz")
    (tmp / "broken_md.json").write_text('{"info": {"format_version": "1.4"}, "detection_categories": {"1": "animal"},'
                                        ' "images": [{"file": "zebra/0.jpg", "detections": []}, {"file": ')
    outside = tmp / "outside"
    outside.mkdir()
    Image.new("RGB", (20, 28)).save(outside / "secret.jpg")
    linked_src = shutil.copytree(tmp / "src", tmp / "linked_src")  # src and a symlink leading out of it
    (linked_src / "linked.jpg").symlink_to(outside / "secret.jpg")
    (tmp / "outside_labels.csv").write_text(f"path,label\n{outside / 'secret.jpg'},zebra\n../outside/secret.jpg,zebra\n"
                                            f"linked.jpg,impala\n")
    (linked_src / "outside_list.txt").write_text(f"zebra/0.jpg\n{outside / 'secret.jpg'}\n../outside/secret.jpg\n"
                                                 f"linked.jpg\n")
    return {"run": str(tmp / "claimed_run"), "tampered": str(tmp / "tampered"), "demo_data": str(tmp / "demo_data"),
            "old_ds": str(old_ds), "other_map": str(tmp / "other_map.json"), "huge_map": str(tmp / "huge_map"),
            "negative_map": str(tmp / "negative_map"), "lila": str(lila), "linked_src": str(linked_src)}


@pytest.mark.parametrize("template, fragment", BAD_INVOCATIONS, ids=[row[0].split()[0] + ":" + row[1][:40]
                                                                     for row in BAD_INVOCATIONS])
def test_bad_invocation_is_one_error_line_and_exit_2(workspace, template, fragment):
    before = {name: tree_hashes(Path(workspace[name])) for name in PROTECTED}
    # "\x00" in a template is an empty argument ('' cannot survive the split).
    args = [part.format(**workspace).replace("\x00", "") for part in template.split()]
    result = invoke_cli(args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    # Split on newlines only: an error written after a progress bar's text (same line) must fail.
    errors = [line for line in result.stderr.split("\n") if "Error: " in line]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    shown = terminal_view(errors[0])
    assert shown.startswith("Error: ") and shown == errors[0].split("\r")[-1].rstrip(), repr(errors[0])
    # Inputs are only read, and a refused command leaves no output folder behind.
    assert {name: tree_hashes(Path(workspace[name])) for name in before} == before
    assert not (Path(workspace["tmp"]) / "out").exists()


def test_usage_errors_keep_click_exit_code_2(workspace):
    result = invoke_cli(["prepare"])
    assert result.exit_code == 2 and "Missing argument 'OUT_DIR'" in result.stderr
