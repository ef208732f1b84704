"""Hostile-input helpers for fuzzing metadata readers (`test_fuzz_readers.py`; a new reader's fuzz test
reuses them: build `hostile_tree`, write metadata naming `hostile_paths`, read it inside
`reading_is_safe(read, tree["forbidden"])`).

The property every reader must have: a one-line UserError or a valid manifest, never a traceback,
and never a read outside the image root (no file outside it opened, no row outside it kept).
"""

from __future__ import annotations

import builtins
import contextlib
import os
from pathlib import Path
from typing import Callable, Iterator

from hypothesis import strategies as st

from serengeti_tf.data.sources.root import is_inside
from serengeti_tf.errors import UserError

# Species folders of the tree and the files in them.
INSIDE = ["zebra/z1.jpg", "zebra/z2.jpg", "impala/i1.jpg"]


def hostile_tree(base: Path) -> dict[str, Path]:
    """`base/root` (the image root: two species folders, a symlinked file and a symlinked folder that
    lead out of it) and `base/outside/secret.jpg` (a file no reader may open or keep). `forbidden`:
    what `reading_is_safe` checks is never opened."""
    root, outside = base / "root", base / "outside"
    outside.mkdir(parents=True)
    (outside / "secret.jpg").write_bytes(b"\xff\xd8 not the dataset's")
    for relative in INSIDE:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"\xff\xd8 image")
    (root / "zebra" / "link.jpg").symlink_to(outside / "secret.jpg")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    return {"root": root, "outside": outside, "secret": outside / "secret.jpg", "forbidden": (outside, Path("/etc"))}


def hostile_paths(tree: dict[str, Path]) -> st.SearchStrategy[str]:
    """Image paths as metadata may give them: inside, absolute or `..` out of the root, through a
    symlink, Windows-style, odd text."""
    secret = str(tree["secret"])
    return st.one_of(
        st.sampled_from(INSIDE + ["./zebra/z1.jpg", str(tree["root"] / "impala" / "i1.jpg")]),
        st.sampled_from([secret, "../outside/secret.jpg", "zebra/../../outside/secret.jpg", "zebra/link.jpg",
                         "linked/secret.jpg", "/etc/passwd", "C:\\images\\a.jpg", "\\\\server\\share\\a.jpg",
                         "..", "", " ", "zebra/", "NaN", "nul\x00byte.jpg"]),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    )


@contextlib.contextmanager
def opens_recorded() -> Iterator[list[str]]:
    """Records the path of every `open()`, `os.scandir()` and `os.listdir()` while the block runs."""
    seen: list[str] = []
    real_open, real_scandir, real_listdir = builtins.open, os.scandir, os.listdir

    def spy_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            seen.append(os.fsdecode(file))
        return real_open(file, *args, **kwargs)

    def spy_scandir(path="."):
        seen.append(os.fsdecode(path))
        return real_scandir(path)

    def spy_listdir(path="."):
        seen.append(os.fsdecode(path))
        return real_listdir(path)

    builtins.open, os.scandir, os.listdir = spy_open, spy_scandir, spy_listdir
    try:
        yield seen
    finally:
        builtins.open, os.scandir, os.listdir = real_open, real_scandir, real_listdir


def reading_is_safe(read: Callable[[], object], forbidden: tuple[Path, ...]) -> object:
    """Runs `read()`; returns its result, or None after a one-line UserError. Fails on any other
    exception (a traceback) and on an open()/scandir()/listdir() of anything inside `forbidden` (the folders
    beside the image root that hostile metadata points at; Python itself reads system files)."""
    with opens_recorded() as seen:
        try:
            result = read()
        except UserError as err:
            assert "\n" not in str(err), f"multi-line error: {err!r}"
            result = None
    escaped = [p for p in seen if any(is_inside(p, folder) for folder in forbidden)]
    assert not escaped, f"opened outside the image root: {escaped}"
    return result


def assert_kept_inside(manifest, root: Path) -> None:
    """Every row a manifest keeps (no drop reason) names a file inside `root`, symlinks followed."""
    kept = manifest.loc[manifest["drop_reason"] == "", "path"]
    outside = [p for p in kept if not is_inside(p, root)]
    assert not outside, f"kept paths outside the image root: {outside}"
