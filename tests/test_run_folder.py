"""run_folder: artefact names, the lineage record and the output job, on tiny folders in tmp_path."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from serengeti_tf import io_utils, run_folder
from serengeti_tf.errors import UserError
from serengeti_tf.run_folder import (
    DatasetFolder,
    EvalFolder,
    ExperimentFolder,
    ExportFolder,
    Lineage,
    OutputJob,
    PredictOutputs,
    RunFolder,
)

PACKAGE = Path(run_folder.__file__).parent


def test_imports_without_tensorflow_or_lower_layers():
    code = ("import sys, serengeti_tf.run_folder; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras') or "
            "m.startswith(tuple('serengeti_tf.' + p for p in ('data', 'models', 'train', 'evaluate')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_models_no_longer_import_train():
    for path in (PACKAGE / "models").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("serengeti_tf.train"), f"{path.name} imports {node.module}"


def test_run_folder_names_its_artefacts(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert run.model == tmp_path / "run" / "model.keras"
    assert run.lineage.name == "lineage.json" and run.class_map.name == "class_map.json"
    assert run.config.name == "config.yaml" and run.metrics.name == "metrics.csv"
    assert run.state == tmp_path / "run" / "checkpoints" / "state.json"
    assert (run.timings.name, run.versions.name) == ("timings.json", "versions.json")
    assert run.tensorboard.name == "tensorboard"
    assert run.eval_dir("test").root == tmp_path / "run" / "eval"
    assert run.eval_dir("val").metrics == tmp_path / "run" / "eval_val" / "metrics.json"


def test_other_folder_kinds_name_their_artefacts(tmp_path):
    assert DatasetFolder(tmp_path).summary.name == "summary.json"
    assert DatasetFolder(tmp_path).shard_index.name == "shards.json"
    assert EvalFolder(tmp_path).per_class.name == "per_class.csv"
    assert ExportFolder(tmp_path).report.name == "export_report.json"
    assert ExportFolder(tmp_path).fingerprint.name == io_utils.MARKER
    assert ExperimentFolder(tmp_path).seed_dir(2) == tmp_path / "runs" / "seed2"
    assert ExperimentFolder(tmp_path).runs_csv.name == "runs.csv"


def test_predict_outputs_beside_the_csv(tmp_path):
    outputs = PredictOutputs(tmp_path / "out.csv")
    assert outputs.skipped == tmp_path / "out.skipped.csv"
    assert outputs.meta == tmp_path / "out.meta.json"
    assert outputs.partial == tmp_path / ".out.csv.partial"
    assert list(outputs.as_dict()) == ["predictions", "skipped", "captures", "config", "meta", "partial",
                                       "partial_skipped", "partial_meta"]
    with pytest.raises(UserError, match="output must be a .csv file, got .*out.txt"):
        PredictOutputs(tmp_path / "out.txt")


def test_a_missing_run_file_says_the_run_is_not_finished(tmp_path):
    with pytest.raises(UserError, match=r"is not a finished training run: lineage.json missing"):
        Lineage.read(tmp_path)
    with pytest.raises(UserError, match=r"class_map.json missing"):
        RunFolder(tmp_path).require("class_map.json")


def test_lineage_writes_the_record_unchanged_and_reads_typed(tmp_path):
    record = {"phase": 2, "sampler": "ros", "dataset_dir": "/data", "init_run": "/runs/p1",
              "init_model_sha256": "ab" * 32, "seed": 3, "input_size": 64, "extra": [1, 2]}
    Lineage(record).write(tmp_path)
    expected = tmp_path / "expected.json"
    io_utils.write_json(expected, record)
    assert RunFolder(tmp_path).lineage.read_bytes() == expected.read_bytes()  # keys in their order, same bytes
    lineage = Lineage.read(tmp_path)
    assert (lineage.phase, lineage.sampler, lineage.seed, lineage.input_size) == (2, "ros", 3, 64)
    assert (lineage.dataset_dir, lineage.init_run, lineage.init_model_sha256) == ("/data", "/runs/p1", "ab" * 32)
    assert dict(lineage) == record and lineage.as_dict() == record


def test_lineage_defaults_for_keys_not_recorded():
    lineage = Lineage({})
    assert (lineage.phase, lineage.sampler, lineage.seed) == (1, "none", 0)
    assert lineage.dataset_dir is None and lineage.init_run is None and lineage.get("phase") is None


def test_lineage_that_is_not_an_object_is_one_line(tmp_path):
    (tmp_path / "lineage.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(UserError, match="lineage.json must hold a JSON object, got list"):
        Lineage.read(tmp_path)


def test_job_refuses_an_output_inside_an_input_before_creating_anything(tmp_path):
    source = tmp_path / "images"
    source.mkdir()
    job = OutputJob(source / "out", "evaluation", inputs={"--image-root": source}, what="evaluation folder")
    with pytest.raises(UserError, match=r"evaluation folder .*out lies inside the input --image-root"):
        with job:
            pass
    assert not (source / "out").exists()


def test_job_claims_resumes_and_refuses_other_work(tmp_path):
    out = tmp_path / "out"
    with OutputJob(out, "evaluation", done="metrics.json") as job:
        assert job.claim({"a": 1}) is False
        assert not job.finished
        io_utils.write_json(out / "metrics.json", {"ok": True})
    with OutputJob(out, "evaluation", done="metrics.json") as job:
        assert job.claim({"a": 1}) is True and job.finished
    with OutputJob(out, "evaluation") as job:
        with pytest.raises(UserError, match=r"already holds different output \(differs in: a\)"):
            job.claim({"a": 2})
        assert job.claim({"a": 2}, overwrite=True) is False
    assert not (out / "metrics.json").exists()  # --overwrite deleted what serengeti-tf wrote
    assert json.loads((out / io_utils.MARKER).read_text()) == {"a": 2}


def test_job_refuses_output_of_another_kind_even_with_overwrite(tmp_path):
    with OutputJob(tmp_path / "out", "run") as job:
        job.claim({"a": 1})
    with OutputJob(tmp_path / "out", "export") as job:
        with pytest.raises(UserError, match="holds a run .*not an export"):
            job.claim({"b": 1}, overwrite=True)


def test_job_holds_its_lock_for_the_block(tmp_path):
    out = tmp_path / "out"
    with OutputJob(out, "evaluation"):
        assert (out / io_utils.LOCK_FILE).exists()
        with pytest.raises(UserError, match="is in use by process"):
            with OutputJob(out, "evaluation"):
                pass
    assert not out.exists()  # nothing written: the folder the lock created is gone again


def test_a_staged_job_replaces_the_folder_whole_and_locks_beside_it(tmp_path):
    out = tmp_path / "export"
    with OutputJob(out, "export", lock_beside=True) as job:
        assert (tmp_path / ".export.lock").exists() and not out.exists()
        assert job.holds({"f": 1}) is False
        with job.stage() as tmp:
            io_utils.write_text(ExportFolder(tmp).labels, "cat\n")
            io_utils.write_json(ExportFolder(tmp).fingerprint, {"f": 1})  # last: marks the export complete
            assert not out.exists()
    assert ExportFolder(out).labels.read_text() == "cat\n"
    with OutputJob(out, "export", lock_beside=True) as job:
        assert job.holds({"f": 1}) is True


def test_a_failed_stage_leaves_no_output(tmp_path):
    out = tmp_path / "export"
    with pytest.raises(RuntimeError):
        with OutputJob(out, "export", lock_beside=True) as job, job.stage() as tmp:
            io_utils.write_text(tmp / "labels.txt", "cat\n")
            raise RuntimeError("killed")
    assert not out.exists() and not list(tmp_path.glob(".export.*.partial"))


def test_claim_kind_refuses_a_folder_serengeti_tf_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with OutputJob(tmp_path, "experiment") as job:
        with pytest.raises(UserError, match="not empty and was not written by serengeti-tf"):
            job.claim_kind()


def test_job_kind_must_be_known(tmp_path):
    with pytest.raises(ValueError, match="output kind must be one of"):
        OutputJob(tmp_path, "runs")
    with pytest.raises(ValueError, match="names no file marking it finished"):
        _ = OutputJob(tmp_path, "run").finished
