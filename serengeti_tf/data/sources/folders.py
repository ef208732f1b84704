"""Reader for folder-per-class layouts: `root/<Species>/*.jpg` and camtrapR's `root/<Station>/<Species>/*.JPG`.

The layout is detected from where the images are: one level below the root -> species folders;
two levels -> station folders holding species folders (station = site). Non-image files (camtrapR
samples include an .mp4) and hidden entries are skipped.

camtrapR names files `<Station>__<YYYY-MM-DD>__<HH-MM-SS>(<n>).JPG`: frames `(1)`, `(2)` of one
trigger share a capture, so capture_id is `<Station>__<date>__<time>` and the datetime is parsed.
Other file names make each image its own capture.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from serengeti_tf import events
from serengeti_tf.data.sources import canonical_series, lookup, species_by_key
from serengeti_tf.data.sources.root import is_inside
from serengeti_tf.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})

_CAMTRAPR_NAME = re.compile(r"^(?P<station>.+?)__(?P<date>\d{4}-\d{2}-\d{2})__(?P<time>\d{2}-\d{2}-\d{2})"
                            r"(?:\((?P<frame>\d+)\))?$")


def _is_image(path: Path) -> bool:
    # A dangling symlink is listed too: the missing-file filter then drops it as `missing_file`.
    return ((path.is_file() or path.is_symlink()) and path.suffix.lower() in IMAGE_SUFFIXES
            and not path.name.startswith("."))


def _visible_dirs(folder: Path, root: Path) -> list[Path]:
    # A symlinked folder leading out of the root is not listed at all (root.py: reads stay inside).
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (not p.is_symlink() or is_inside(p, root)))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_image(p))


def detect_layout(root: Path) -> str:
    """`species` (root/<Species>/img) or `station_species` (root/<Station>/<Species>/img)."""
    level1 = _visible_dirs(root, root)
    at_level1 = any(_images_in(d) for d in level1)
    at_level2 = any(_images_in(d2) for d in level1 for d2 in _visible_dirs(d, root))
    if at_level1 and at_level2:
        raise UserError(f"{root} mixes images in <Species>/ folders and in <Station>/<Species>/ folders; "
                        "use one layout")
    if at_level2:
        return "station_species"
    if at_level1:
        return "species"
    raise UserError(f"no images (.jpg, .jpeg, .png) found in class folders under {root}: expected "
                    "<root>/<Species>/*.jpg or <root>/<Station>/<Species>/*.jpg")


def parse_camtrapr_name(stem: str) -> dict | None:
    """`StationA__2009-04-21__00-40-00(2)` -> station, capture_id, datetime, frame; None otherwise."""
    match = _CAMTRAPR_NAME.match(stem)
    if match is None:
        return None
    return {"station": match["station"],
            "capture_id": f"{match['station']}__{match['date']}__{match['time']}",
            "datetime": f"{match['date']} {match['time'].replace('-', ':')}",
            "frame": int(match["frame"] or 0)}


def _row(root: Path, image: Path, species_dir: str, station: str) -> dict:
    relative = image.relative_to(root).as_posix()
    parsed = parse_camtrapr_name(image.stem)
    row = {"path": relative, "raw_species": species_dir, "site": station,
           "capture_id": relative.rsplit(".", 1)[0], "datetime": "", "frame": 0,
           # camtrapR files one photo under each species in it: same station + name = one image.
           "image_key": f"{station}/{image.name}" if station else relative}
    if parsed is not None:
        row.update(capture_id=parsed["capture_id"], datetime=parsed["datetime"], frame=parsed["frame"],
                   site=station or parsed["station"])
    return row


def read_folders(metadata: Sequence[str], image_root: str,
                 on_event: events.EventSink = events.ignore) -> pd.DataFrame:
    """Lists the class folders under `image_root` into manifest columns (one row per image file)."""
    root = Path(image_root)
    layout = detect_layout(root)
    rows = []
    for top in _visible_dirs(root, root):
        if layout == "species":
            rows += [_row(root, image, top.name, "") for image in _images_in(top)]
        else:
            for species_dir in _visible_dirs(top, root):
                rows += [_row(root, image, species_dir.name, top.name) for image in _images_in(species_dir)]
    frame = pd.DataFrame(rows)
    frame["species"] = canonical_series(frame["raw_species"])
    union = species_by_key(frame["image_key"], frame["species"])
    frame["species"] = lookup(frame["image_key"], union)
    return frame.drop(columns=["raw_species", "image_key"])
