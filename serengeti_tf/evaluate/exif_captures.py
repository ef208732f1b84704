"""`predict --group-by-time SECONDS`: captures formed from EXIF times, the way review tools group bursts.

Per folder (one folder = one camera, as cameras and Timelapse/AddaxAI lay images out), images are
ordered by EXIF `DateTimeOriginal`; an image taken at most SECONDS after the previous image of the same
folder joins its capture, otherwise it starts a new one. Capture ids read `<folder>#<n>` (n counts
from 1 in time order within the folder; `.` for the top folder). An image without a readable
`DateTimeOriginal` (no EXIF, a PNG, a blank or malformed time) is a capture of its own (id: its path)
and is counted, so the summary can say how many there were.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Optional

import pandas as pd

from serengeti_tf.errors import UserError, setting

EXIF_IFD = 0x8769
DATETIME_ORIGINAL = 36867
EXIF_TIME_FORMAT = "%Y:%m:%d %H:%M:%S"
READ_THREADS = 4


def exif_time(file: str | Path) -> Optional[datetime]:
    """The image's EXIF DateTimeOriginal (reads the header only), or None when absent or unreadable."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            value = image.getexif().get_ifd(EXIF_IFD).get(DATETIME_ORIGINAL)
    except (OSError, ValueError, SyntaxError):  # missing, not an image, broken EXIF
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    try:
        return datetime.strptime(str(value).strip().rstrip("\x00"), EXIF_TIME_FORMAT) if value else None
    except ValueError:
        return None


def check_seconds(seconds: float) -> float:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= 86_400:
        raise UserError(f"{setting('group_by_time')} must be a number of seconds in [0, 86400], got {seconds!r}")
    return float(seconds)


def group_by_time(paths: pd.Series, times: pd.Series, seconds: float) -> pd.Series:
    """Capture ids for images (`paths` as listed, `times` datetime or NaT), per folder (pure)."""
    seconds = check_seconds(seconds)
    folders = paths.map(lambda p: str(PurePosixPath(str(p).replace("\\", "/")).parent))
    ids = pd.Series(paths.astype(str).to_numpy(), index=paths.index, dtype=object)  # no time: its own capture
    timed = pd.DataFrame({"folder": folders, "time": pd.to_datetime(times), "path": paths.astype(str)})
    timed = timed[timed["time"].notna()].sort_values(["folder", "time", "path"], kind="stable")
    if timed.empty:
        return ids
    gap = timed.groupby("folder")["time"].diff().dt.total_seconds()
    starts = gap.isna() | (gap > seconds)
    number = starts.astype(int).groupby(timed["folder"]).cumsum()
    ids.loc[timed.index] = [f"{folder}#{n}" for folder, n in zip(timed["folder"], number)]
    return ids


def attach_time_captures(frame: pd.DataFrame, seconds: float) -> tuple[pd.DataFrame, dict]:
    """`frame` (list_inputs: path, file) with `capture_id` from EXIF times; and counts for the summary."""
    seconds = check_seconds(seconds)
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        times = pd.Series(list(pool.map(exif_time, frame["file"])), index=frame.index, dtype="datetime64[ns]")
    frame = frame.copy()
    frame["capture_id"] = group_by_time(frame["path"], times, seconds)
    without = int(times.isna().sum())
    counts = {"seconds": seconds, "captures": int(frame["capture_id"].nunique()),
              "images_without_exif_time": without}
    return frame, counts


def describe(counts: Optional[dict]) -> str:
    if not counts:
        return ""
    return (f"captures from EXIF DateTimeOriginal (<= {counts['seconds']:g} s apart, per folder): "
            f"{counts['captures']} captures; {counts['images_without_exif_time']} images without an EXIF time "
            f"are captures of their own")
