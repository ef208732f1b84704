"""One process per output folder: an exclusive `fcntl.flock` on `OUT/.serengeti-tf.lock`.

The kernel drops a flock lock when its holder exits in any way (even SIGKILL), so a killed
command never leaves a stale lock: the next run simply takes it. A second command on the same
folder fails at once with "OUT is in use by process N" (a UserError: one line, exit 2) instead of
racing the first one on the same files. The lock file holds the holder's process id, for that message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import LOCK_FILE, check_output_path


def _holder(lock_path: Path) -> str:
    try:
        pid = lock_path.read_text(encoding="ascii").strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, lock_name: str = LOCK_FILE) -> Iterator[Path]:
    """Holds the exclusive lock `folder/lock_name` for the block (`folder` is created if needed).

    A folder this call created and left empty (the command failed before writing anything) is
    removed again, so a refused command leaves no trace. A command writing a single file (predict)
    locks its folder under a lock name of its own.
    """
    folder = Path(folder)
    check_output_path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / lock_name
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{folder} is in use by {_holder(lock_path)} (one serengeti-tf command per "
                            f"output folder); wait for it to finish or choose another folder") from None
        # The previous holder may have removed the file between our open and our lock: retry on the new one.
        try:
            same_file = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield lock_path
    finally:
        # Unlinked while still held (a waiting opener then sees a new inode and retries), then released.
        lock_path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when the command wrote nothing
        os.close(fd)
