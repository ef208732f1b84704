"""Bad invocations of every verb -> one `Error: ...` line naming the problem, exit code 2, no traceback.

One table for the whole CLI (issue 10): a row is (verb arguments, message fragment). Paths in the
arguments are templates filled from a small workspace: {src} (a tiny plain-CSV image source),
{ds} (a tiny prepared dataset), {bad_map} / {no_val} (prepared datasets with a corrupt class map
/ a missing val shard), {fake_run} (a run folder without a real model), {foreign} (a folder
holding a user's file), {file} (a plain file), {tmp}.
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
]


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
            "fake_run": str(fake_run)}


@pytest.mark.parametrize("template, fragment", BAD_INVOCATIONS, ids=[row[0].split()[0] + ":" + row[1][:40]
                                                                     for row in BAD_INVOCATIONS])
def test_bad_invocation_is_one_error_line_and_exit_2(workspace, template, fragment):
    before = {name: tree_hashes(Path(workspace[name])) for name in ("src", "ds", "foreign")}
    args = [part.format(**workspace) for part in template.split()]
    result = invoke_cli(args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    # Inputs are only read, and a refused command leaves no output folder behind.
    assert {name: tree_hashes(Path(workspace[name])) for name in before} == before
    assert not (Path(workspace["tmp"]) / "out").exists()


def test_usage_errors_keep_click_exit_code_2(workspace):
    result = invoke_cli(["prepare"])
    assert result.exit_code == 2 and "Missing argument 'OUT_DIR'" in result.stderr
