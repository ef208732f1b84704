"""One process per output folder: an exclusive OS lock on `OUT/.serengeti-tf.lock` (`filelock`).

`filelock.FileLock` takes `fcntl.flock` on Linux/macOS and `msvcrt.locking` on Windows: both locks
belong to an open file handle, and the OS drops them when their holder exits in any way (even
SIGKILL / TerminateProcess), so a killed command never leaves a stale lock: a lock file left behind
is only a file, and the next run simply takes the lock on it. A second command on the same folder
fails at once with "OUT is in use by process N" (a UserError: one line, exit 2) instead of racing
the first one on the same files. The lock file holds the holder's process id, for that message.
Nothing Unix-only is imported here (the package must import on Windows).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import LOCK_FILE, check_output_path


def _holder(lock_path: Path) -> str:
    try:
        pid = lock_path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):  # Windows: the holder's locked byte cannot be read
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def _unwritable(folder: Path, err: OSError) -> UserError:
    """One line for an output folder that cannot be written (read-only disk, no permission)."""
    reason = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
              errno.EPERM: "permission denied"}.get(err.errno, err.strerror or type(err).__name__)
    return UserError(f"cannot write to output folder {folder}: {reason}; choose a writable folder")


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, lock_name: str = LOCK_FILE) -> Iterator[Path]:
    """Holds the exclusive lock `folder/lock_name` for the block (`folder` is created if needed).

    A folder this call created and left empty (the command failed before writing anything) is
    removed again, so a refused command leaves no trace. A command writing a single file (predict)
    locks its folder under a lock name of its own. A folder that cannot be created or written
    (read-only file system, no permission) is a one-line UserError.
    """
    folder = Path(folder)
    check_output_path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _unwritable(folder, err) from None
    lock_path = folder / lock_name
    # timeout=0: one attempt, no waiting. A FileLock object is not shared: a second `output_lock`
    # on the same folder, even in this process, opens its own handle and is refused.
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"{folder} is in use by {_holder(lock_path)} (one serengeti-tf command per "
                        f"output folder); wait for it to finish or choose another folder") from None
    except OSError as err:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise _unwritable(folder, err) from None
    try:
        try:
            # Through a handle of our own: the lock (not the file's content) is what excludes others.
            lock_path.write_text(f"{os.getpid()}\n", encoding="ascii")
        except OSError:
            pass  # Windows refuses writes to a region the lock covers: the message then says "another process"
        yield lock_path
    finally:
        # Removed while still held (filelock re-checks the file after locking, so an opener of the
        # removed file does not take it), then released. Windows refuses removing an open file; its
        # filelock removes the file on release instead. Never removed after release: by then it may
        # be the next holder's.
        with contextlib.suppress(OSError):
            lock_path.unlink(missing_ok=True)
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when the command wrote nothing
