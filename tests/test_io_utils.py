import errno
import json
import os
import signal
import stat
import subprocess
import sys

import pytest
from helpers import raises_as_cli

from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import (
    atomic_path,
    check_output_path,
    claim_output_dir,
    disk_full_message,
    read_json,
    record_owned,
    refuse_overlap,
    write_text,
)
from serengeti_tf.locks import output_lock


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_claim_output_dir_resumes_same_work_and_refuses_other(tmp_path):
    out = tmp_path / "out"
    assert claim_output_dir(out, {"a": 1}) is False
    assert claim_output_dir(out, {"a": 1}) is True
    with pytest.raises(UserError, match="differs in: a"):
        claim_output_dir(out, {"a": 2})
    assert claim_output_dir(out, {"a": 2}, overwrite=True) is False


def test_claim_output_dir_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(UserError, match="not written by serengeti-tf"):
        claim_output_dir(tmp_path, {"a": 1})
    assert (tmp_path / "mine.txt").read_text() == "precious"


# ---------------------------------------------------------------- inputs are only read (issue 10)
@pytest.mark.parametrize("output, relation", [
    ("src", "is"), (".", "contains"), ("src/sub/out", "lies inside"), ("src/../src", "is")])
def test_output_that_is_contains_or_lies_inside_an_input_is_refused(tmp_path, output, relation):
    (tmp_path / "src" / "sub").mkdir(parents=True)
    with raises_as_cli(match=f"{relation} the input --image-root") as info:
        refuse_overlap(tmp_path / output, {"--image-root": tmp_path / "src", "--metadata": []})
    assert "\n" not in str(info.value)


def test_output_containing_an_input_file_is_refused_and_siblings_are_fine(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labels.csv").write_text("x")
    with raises_as_cli(match="contains the input --metadata"):
        refuse_overlap(tmp_path / "data", {"--metadata": [str(tmp_path / "data" / "labels.csv")]})
    refuse_overlap(tmp_path / "out", {"--metadata": [str(tmp_path / "data" / "labels.csv")], "--init": None})
    refuse_overlap(tmp_path / "data2", {"--image-root": tmp_path / "data"})  # a name prefix is not a parent


def test_output_reached_through_a_symlink_is_still_refused(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "src")
    with pytest.raises(UserError, match="is the input"):
        refuse_overlap(tmp_path / "link", {"--image-root": tmp_path / "src"})


def test_output_below_a_file_is_a_user_error(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="lies inside .*file.txt, which is a file"):
        check_output_path(tmp_path / "file.txt" / "sub")
    with pytest.raises(UserError, match="is a file"):
        claim_output_dir(tmp_path / "file.txt", {"a": 1})


def test_overwrite_deletes_only_files_serengeti_tf_wrote(tmp_path):
    out = tmp_path / "out"
    claim_output_dir(out, {"a": 1})
    write_text(out / "report.md", "ours")
    write_text(out / "nested" / "table.csv", "ours too")
    claim_output_dir(out / "inner", {"b": 1})  # a claimed folder inside (a run's eval/)
    write_text(out / "inner" / "metrics.json", "{}")
    record_owned(out / "tensorboard", folder=True)  # written by TF, recorded by hand
    (out / "tensorboard").mkdir()
    (out / "tensorboard" / "events.out").write_text("tf")
    (out / ".report.md.abc.tmp").write_text("left by a kill")
    (out / "inner" / ".model.keras.abc.keras").write_text("left by a kill mid-save")
    (out / "notes.txt").write_text("the user's")
    (out / "nested" / "mine.csv").write_text("the user's")
    assert claim_output_dir(out, {"a": 2}, overwrite=True) is False
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == [".serengeti-tf-files", "fingerprint.json", "nested/mine.csv", "notes.txt"]
    assert json.loads((out / "fingerprint.json").read_text()) == {"a": 2}


def test_corrupt_json_is_a_one_line_user_error(tmp_path):
    (tmp_path / "state.json").write_text('{"epochs_done": 3, "chec')
    with pytest.raises(UserError, match="state.json is not valid JSON") as info:
        read_json(tmp_path / "state.json")
    assert "\n" not in str(info.value)


def test_disk_full_message_covers_python_and_tensorflow_errors():
    message = disk_full_message(OSError(errno.ENOSPC, "No space left on device", "/out/manifest.csv"))
    assert "disk is full" in message and "/out/manifest.csv" in message and "rerun" in message
    assert "disk is full" in disk_full_message(RuntimeError("write failed: No space left on device"))
    assert disk_full_message(OSError(errno.EACCES, "Permission denied")) is None


# ---------------------------------------------------------------- one process per output folder
HOLD_LOCK = """
import sys, time
from serengeti_tf.locks import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_second_process_is_refused_and_a_sigkill_releases_the_lock(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"{out} is in use by process {holder.pid}") as info:
            with output_lock(out):
                pass
        assert "\n" not in str(info.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # No clean-up ran in the killed process, yet the kernel dropped its lock.
    with output_lock(out) as lock:
        assert lock.read_text().strip() == str(os.getpid())
    assert not (out / ".serengeti-tf.lock").exists()


def test_lock_is_released_after_an_error_and_leaves_no_empty_folder(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with output_lock(out):
            raise RuntimeError("failed before writing")
    assert not out.exists()
    with output_lock(out):
        with pytest.raises(UserError, match="in use by process"):  # a second holder, even in this process
            with output_lock(out):
                pass


def test_overwrite_of_a_folder_without_a_file_list_deletes_nothing(tmp_path):
    out = tmp_path / "old"
    claim_output_dir(out, {"a": 1})
    (out / ".serengeti-tf-files").unlink()  # as written before serengeti-tf listed its files
    (out / "summary.json").write_text("{}")
    with pytest.raises(UserError, match="older serengeti-tf that did not list the files"):
        claim_output_dir(out, {"a": 2}, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["fingerprint.json", "summary.json"]


def test_atomic_dir_replaces_only_on_success_and_clears_stale_attempts(tmp_path):
    from serengeti_tf.io_utils import OWNED_LOG, atomic_dir

    out = tmp_path / "out"
    stale = tmp_path / ".out.abc.partial"
    stale.mkdir()
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("killed")
    assert not out.exists() and not stale.exists() and not list(tmp_path.iterdir())
    with atomic_dir(out) as tmp:
        (tmp / "old.txt").write_text("old")
    with atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (out / "old.txt").exists()  # the old output stays until the new one is complete
    assert sorted(p.name for p in out.iterdir()) == [OWNED_LOG, "new.txt"]
    # A file the user put there is never deleted: refused before the block runs.
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="did not write .*notes.txt"):
        with atomic_dir(out):
            raise AssertionError("the block must not run")
    assert (out / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- --overwrite cannot escape (issue 19)
def _claimed_with_list(tmp_path, entries: list[str]):
    """A claimed output folder `out` whose owned-files list was tampered with to hold `entries`,
    and a victim folder beside it holding a user's file."""
    from serengeti_tf.io_utils import OWNED_LOG

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("the user's")
    out = tmp_path / "out"
    claim_output_dir(out, {"a": 1}, kind="plan")
    write_text(out / "plan.csv", "ours")
    with open(out / OWNED_LOG, "a") as log:
        log.writelines(entry.format(victim=victim) + "\n" for entry in entries)
    return out, victim


@pytest.mark.parametrize("entries", [
    ["../victim/"], ["../victim/precious.txt"], ["{victim}/"], ["{victim}/precious.txt"], ["sub/../../victim/"],
    ["link/precious.txt"], ["link/"], ["./"]], ids=["relative-dir", "relative-file", "absolute-dir",
                                                   "absolute-file", "dotdot-inside", "via-symlink", "symlink-dir",
                                                   "the-folder"])
def test_tampered_owned_list_deletes_nothing_anywhere(tmp_path, entries):
    out, victim = _claimed_with_list(tmp_path, entries)
    (out / "link").symlink_to(victim, target_is_directory=True)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    if entries == ["link/"]:  # the link itself is ours to remove; its target is never followed
        claim_output_dir(out, {"a": 2}, overwrite=True, kind="plan")
        assert not os.path.lexists(out / "link") and (victim / "precious.txt").read_text() == "the user's"
        return
    with raises_as_cli(match="refusing --overwrite, nothing was deleted") as info:
        claim_output_dir(out, {"a": 2}, overwrite=True, kind="plan")
    assert "\n" not in str(info.value)
    # Nothing deleted outside the folder, and nothing at all inside it (no partial overwrite).
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert (out / "link").is_symlink()


def test_nested_claimed_folder_through_a_symlink_is_not_entered(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    claim_output_dir(elsewhere, {"b": 1}, kind="evaluation")
    write_text(elsewhere / "metrics.json", "{}")
    out = tmp_path / "out"
    claim_output_dir(out, {"a": 1}, kind="run")
    (out / "eval").symlink_to(elsewhere, target_is_directory=True)
    claim_output_dir(out, {"a": 2}, overwrite=True, kind="run")
    assert (elsewhere / "metrics.json").read_text() == "{}" and (elsewhere / "fingerprint.json").is_file()


# ---------------------------------------------------------------- kinds: no --overwrite across kinds
def test_overwrite_across_kinds_is_refused_naming_both(tmp_path):
    out = tmp_path / "out"
    claim_output_dir(out, {"a": 1}, kind="run")
    write_text(out / "model.keras", "weights")
    for kind in ("plan", "report", "demo dataset", "dataset"):
        with pytest.raises(UserError, match=f"holds a run \\(train output\\), not an? {kind};") as info:
            claim_output_dir(out, {"b": 1}, overwrite=True, kind=kind)
        assert "\n" not in str(info.value)
    assert (out / "model.keras").read_text() == "weights"
    assert claim_output_dir(out, {"a": 2}, overwrite=True, kind="run") is False  # same kind: allowed


@pytest.mark.parametrize("fingerprint, files, kind", [
    ({"kind": "serengeti-tf train run", "config": {}}, [], "run"),
    ({"prepare_format": 1, "image_root": "/x"}, [], "dataset"),
    ({"command": "demo-data", "seed": 0}, [], "demo dataset"),
    ({"command": "plan", "source": "/x"}, [], "plan"),
    ({"kind": "serengeti-tf compare", "runs": []}, [], "report"),
    ({"model_sha256": "0", "split": "test"}, [], "evaluation"),
    (None, ["runs.csv"], "experiment"),
    (None, ["demo.json"], "demo"),
])
def test_folders_written_before_kinds_are_recognised_by_their_files(tmp_path, fingerprint, files, kind):
    from serengeti_tf.io_utils import folder_kind

    if fingerprint is not None:
        (tmp_path / "fingerprint.json").write_text(json.dumps(fingerprint))
    for name in files:
        (tmp_path / name).write_text("x")
    assert folder_kind(tmp_path) == kind


def test_old_folder_of_unknown_kind_is_never_overwritten(tmp_path):
    (tmp_path / "fingerprint.json").write_text(json.dumps({"something": "else"}))
    (tmp_path / ".serengeti-tf-files").write_text("fingerprint.json\nresult.csv\n")
    (tmp_path / "result.csv").write_text("x")
    with pytest.raises(UserError, match="a kind this version cannot tell"):
        claim_output_dir(tmp_path, {"a": 1}, overwrite=True, kind="plan")
    assert (tmp_path / "result.csv").is_file()


def test_folder_kind_commands_resume_their_own_folder_and_refuse_others(tmp_path):
    from serengeti_tf.io_utils import claim_folder_kind

    claim_folder_kind(tmp_path / "exp", "experiment")
    write_text(tmp_path / "exp" / "runs.csv", "x")
    claim_folder_kind(tmp_path / "exp", "experiment")  # a rerun continues
    with pytest.raises(UserError, match="holds an experiment .*, not a demo"):
        claim_folder_kind(tmp_path / "exp", "demo")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    with pytest.raises(UserError, match="not written by serengeti-tf"):
        claim_folder_kind(tmp_path / "mine", "demo")
    legacy = tmp_path / "legacy_demo"  # a demo folder from before kinds: adopted, not refused
    legacy.mkdir()
    (legacy / "demo.json").write_text("{}")
    claim_folder_kind(legacy, "demo")
    assert (legacy / "fingerprint.json").is_file()
