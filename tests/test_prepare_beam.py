"""`prepare --runner beam`: the same dataset as the local runner, resume, options, and the missing-extra error.

"The same dataset" here means: the same manifest (kept images, drop reasons, splits), counts, split
table, class map, shard index and TFDS metadata, and byte-identical shard files (same shard
boundaries, same record order). Only `summary.json` differs (timings, `runner`). Most tests run
Beam's DirectRunner in one process (`in_memory`, seconds); one runs the default multi-process mode.
"""

from __future__ import annotations

import sys

import pytest
from helpers import InterruptAfter, invoke_cli, prepare_config, prepare_locally, raises_as_cli, shard_bytes, tree_hashes

from serengeti_tf.data.prepare import prepare_dataset

pytestmark = pytest.mark.beam
IN_MEMORY = "--direct_running_mode=in_memory"
# Every output except summary.json (timings) must match the local runner's file for file.
SAME_FILES = ("manifest.csv", "counts.csv", "splits.csv", "shards.json", "class_map.json", "features.json",
              "label.labels.txt", "fingerprint.json")


@pytest.fixture(scope="module")
def local_prepared(csv_source, tmp_path_factory):
    return prepare_locally(*csv_source, tmp_path_factory.mktemp("local") / "ds")


def assert_same_dataset(local, other) -> None:
    assert shard_bytes(local) and shard_bytes(other) == shard_bytes(local)
    for name in SAME_FILES:
        assert (other / name).read_bytes() == (local / name).read_bytes(), name


def test_beam_in_memory_writes_the_local_dataset(csv_source, local_prepared, tmp_path):
    pytest.importorskip("apache_beam")
    root, metadata = csv_source
    before = tree_hashes(root)
    out = tmp_path / "beam"
    summary = prepare_dataset(prepare_config(root, metadata, runner="beam", beam_options=IN_MEMORY), out,
                              progress=False)
    assert summary["runner"] == "beam" and summary["drops"]["corrupt_image"] == 1
    assert_same_dataset(local_prepared, out)
    assert tree_hashes(root) == before  # no source touched
    assert not list((out / ".prepare_state").glob("beam-plan/*"))  # plans are removed once written
    again = prepare_dataset(prepare_config(root, metadata, runner="beam", beam_options=IN_MEMORY), out, progress=False)
    assert again["up_to_date"] is True


@pytest.mark.slow
def test_beam_multi_process_default_writes_the_local_dataset(csv_source, local_prepared, tmp_path):
    """The default DirectRunner mode: two worker processes."""
    pytest.importorskip("apache_beam")
    root, metadata = csv_source
    out = tmp_path / "beam2"
    prepare_dataset(prepare_config(root, metadata, runner="beam", workers=2), out, progress=False)
    assert_same_dataset(local_prepared, out)


def test_beam_resumes_a_run_the_local_runner_interrupted(csv_source, local_prepared, tmp_path):
    """Finished shards are kept (not rewritten); the rest is written by Beam; the result is the clean one."""
    pytest.importorskip("apache_beam")
    root, metadata = csv_source
    out = tmp_path / "resumed"
    stop = InterruptAfter(3)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(prepare_config(root, metadata), out, progress=False, after_shard=stop)
    kept = {name: (out / name).stat().st_mtime_ns for name in stop.done}
    summary = prepare_dataset(prepare_config(root, metadata, runner="beam", beam_options=IN_MEMORY), out,
                              progress=False)
    assert summary["resumed"] is True
    assert {name: (out / name).stat().st_mtime_ns for name in stop.done} == kept
    assert_same_dataset(local_prepared, out)


def test_unknown_beam_option_is_refused_by_name(csv_source, tmp_path):
    pytest.importorskip("apache_beam")
    root, metadata = csv_source
    with raises_as_cli(match="--no_such_option"):
        prepare_dataset(prepare_config(root, metadata, runner="beam", beam_options="--no_such_option=1"),
                        tmp_path / "x", progress=False)


def test_beam_options_without_the_beam_runner_are_refused(csv_source, tmp_path):
    root, metadata = csv_source
    with raises_as_cli(match="add --runner beam"):
        prepare_dataset(prepare_config(root, metadata, beam_options="--direct_num_workers=2"), tmp_path / "x",
                        progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("given, expected", [
    ("", ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=3",
          "--default_sdk_harness_log_level=WARNING"]),
    (IN_MEMORY, [IN_MEMORY, "--runner=DirectRunner", "--direct_num_workers=1",
                 "--default_sdk_harness_log_level=WARNING"]),
    ("--runner=DataflowRunner --project=p", ["--runner=DataflowRunner", "--project=p",
                                             "--direct_running_mode=multi_processing", "--direct_num_workers=3"]),
])
def test_option_args_add_direct_runner_defaults_the_user_did_not_set(given, expected):
    from serengeti_tf.data.beam_runner import option_args

    assert option_args(given, 3) == expected


@pytest.mark.parametrize("flag", ["--runner", "--set"])
def test_runner_beam_without_beam_names_the_extra(csv_source, tmp_path, monkeypatch, flag):
    """Runs with or without Apache Beam installed: an import that fails is what the user sees."""
    root, metadata = csv_source
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # `import apache_beam` now raises ImportError
    runner = ["--runner", "beam"] if flag == "--runner" else ["--set", "data.runner=beam"]
    result = invoke_cli(["prepare", str(tmp_path / "out"), "--metadata", str(metadata), "--image-root", str(root),
                         *runner])
    assert result.exit_code != 0
    assert "serengeti-tf[beam]" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
