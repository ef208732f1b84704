"""Windows readiness that can be checked on Linux: every module imports, and every lock works, with the
Unix-only standard modules unavailable; a read-only output folder is a one-line error."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env

from serengeti_tf.errors import UserError

UNIX_ONLY = ("fcntl", "resource", "pwd", "grp", "termios")

IMPORT_ALL_AND_LOCK = """
import sys
for name in {unix_only!r}:
    sys.modules[name] = None  # `import fcntl` now raises ImportError, as on Windows
import importlib, pkgutil
import serengeti_tf, serengeti_tf_cli
names = []
for package in (serengeti_tf, serengeti_tf_cli):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
        names.append(info.name)
from serengeti_tf.errors import UserError
from serengeti_tf.evaluate.predict import output_csv_lock, output_paths
from serengeti_tf.locks import output_lock
out = sys.argv[1]
with output_lock(out) as lock:  # the run / dataset / evaluation folder lock
    try:
        with output_lock(out):
            raise SystemExit("second lock on the same folder was not refused")
    except UserError as err:
        assert "is in use by" in str(err), err
with output_csv_lock(output_paths(out + "/pred.csv")):  # predict's lock beside its CSV
    pass
print(len(names), "modules")
"""


@pytest.mark.slow  # a child process imports TensorFlow and every module
def test_every_module_imports_and_locks_work_without_unix_only_modules(tmp_path):
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL_AND_LOCK.format(unix_only=UNIX_ONLY),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=600,
                          env=subprocess_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[0]) > 40  # the walk really imported the package
    assert not (tmp_path / "out").exists()  # a lock on a new folder leaves nothing behind


def test_no_module_level_unix_only_import_in_the_package():
    """The subprocess test covers imports made at import time; this names the offender directly."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in [*(root / "serengeti_tf").rglob("*.py"), *(root / "cli").rglob("*.py")]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            words = line.split()
            if line[:1] not in (" ", "\t") and len(words) >= 2 and words[0] in ("import", "from") \
                    and words[1].split(".")[0] in UNIX_ONLY:
                offenders.append(f"{path.relative_to(root)}:{number}: {line}")
    assert not offenders


def test_read_only_output_folder_is_a_one_line_error(tmp_path, monkeypatch):
    """A read-only file system (EROFS) where the lock file is created: no traceback, one line."""
    import os

    from serengeti_tf.locks import output_lock

    out = tmp_path / "ro"
    out.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(out)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(UserError, match="cannot write to output folder .*: the file system is read-only") as info:
        with output_lock(out):
            pass
    assert "\n" not in str(info.value)
    monkeypatch.undo()

    blocked = tmp_path / "blocked"
    monkeypatch.setattr(Path, "mkdir", lambda *a, **k: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied")))
    with pytest.raises(UserError, match="cannot write to output folder .*: permission denied"):
        with output_lock(blocked / "run"):
            pass


def test_read_only_output_through_the_cli_is_one_line(tmp_path, monkeypatch):
    import os

    from helpers import invoke_cli

    real_open = os.open
    out = tmp_path / "prepared"

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(out)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    images = tmp_path / "images" / "zebra"
    images.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (40, 30)).save(images / "a.jpg")
    monkeypatch.setattr(os, "open", read_only)
    result = invoke_cli(["prepare", out, "--image-root", tmp_path / "images"])
    assert result.exit_code == 2 and "the file system is read-only" in result.output
    assert result.output.strip().count("\n") == 0
