import os
import stat

import pytest

from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import atomic_path, claim_output_dir, write_text


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


def test_atomic_dir_replaces_only_on_success_and_clears_stale_attempts(tmp_path):
    from serengeti_tf.io_utils import atomic_dir

    out = tmp_path / "out"
    stale = tmp_path / ".out.abc.partial"
    stale.mkdir()
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("killed")
    assert not out.exists() and not stale.exists() and not list(tmp_path.iterdir())
    out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (out / "old.txt").exists()  # the old output stays until the new one is complete
    assert [p.name for p in out.iterdir()] == ["new.txt"]
