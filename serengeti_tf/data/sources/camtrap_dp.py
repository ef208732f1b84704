"""Reader for a Camtrap DP 1.0 package (`datapackage.json` + deployments.csv, media.csv, observations.csv).

One manifest row per image of `media.csv`:
- path: a relative `filePath` as is; a URL `filePath` (Agouti, GBIF exports) by its `fileName`, both
  relative to `data.image_root`. When two media of the package share a `fileName` (camera counters
  repeat across deployments), every URL media is looked for under `<deploymentID>/<fileName>` instead.
- species: from the observations' `scientificName`. A media with media-level observations takes
  those; a media without any takes the event-level observations of its deployment whose
  `eventStart..eventEnd` holds its timestamp. Several species are `+`-joined (`multi_species`).
  Scientific names map back to the class labels of the shipped table (`species.scientific_names`:
  `Equus quagga` -> `zebra`; `Panthera leo` by `sex` to `lionfemale` / `lionmale`); other names
  become labels themselves (`Ardea cinerea` -> `ardea_cinerea`).
- `observationType`: blank -> `empty`, human -> `human` (the usual filters drop both);
  vehicle, unknown (and an animal without scientificName) -> dropped as `vehicle` / `unknown`;
  unclassified (or no observation at all) -> `unlabelled`.
- capture_id: the observations' `eventID` (the mediaID when there is none); site: the deployment's
  `locationID` (its `deploymentID` when empty), so `--group-by site` keeps a place in one split;
  datetime: the media `timestamp`; frame: rank by timestamp within the capture.
- video / audio media are dropped as `not_an_image`.
Boxes (`bboxX/Y/Width/Height` of media-level observations) are read by `detections.package_detections` as
detector boxes, so `prepare --detections datapackage.json` cuts one crop per box.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from serengeti_tf import events, species
from serengeti_tf.data.sources import lookup, read_metadata_csv, relative_posix, species_by_key
from serengeti_tf.data.sources.root import is_inside
from serengeti_tf.errors import UserError
from serengeti_tf.species import canonical_species

log = logging.getLogger(__name__)

TABLES = ("deployments", "media", "observations")
REQUIRED_COLUMNS = {
    "deployments": ("deploymentID",),
    "media": ("mediaID", "deploymentID", "timestamp", "filePath"),
    "observations": ("observationID", "deploymentID", "observationLevel", "observationType"),
}
BOX_COLUMNS = ("bboxX", "bboxY", "bboxWidth", "bboxHeight")
# Optional columns the reader uses: absent ones read as empty.
OPTIONAL_COLUMNS = {
    "deployments": ("locationID",),
    "media": ("fileName", "fileMediatype"),
    "observations": ("mediaID", "eventID", "eventStart", "eventEnd", "scientificName", "sex",
                     "classificationProbability", *BOX_COLUMNS),
}
# observationType -> the label it gives (animal: its scientificName); "" leaves the media unlabelled.
TYPE_LABELS = {"blank": "empty", "human": "human", "vehicle": "vehicle", "unknown": "unknown", "unclassified": ""}
# Labels the reader drops itself (the usual filters know nothing of them).
READER_DROPS = {"vehicle": "vehicle", "unknown": "unknown"}
NOT_AN_IMAGE = "not_an_image"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def read_package(path: str | Path) -> tuple[dict, dict[str, pd.DataFrame]]:
    """The descriptor and the three tables (all columns as text) of a Camtrap DP package.

    Raises UserError (one line) for a descriptor that is not JSON, a missing resource, a remote
    or missing table file, or a table without a required column.
    """
    path = Path(path)
    descriptor = _descriptor(path)
    profile = str(descriptor.get("profile", ""))
    if "camtrap-dp" in profile and not re.search(r"camtrap-dp/1\.", profile):
        log.warning("%s: profile %s is not Camtrap DP 1.x; reading it as 1.0", path, profile)
    return descriptor, {name: _read_table(resource_file(path, descriptor, name), name) for name in TABLES}


def table_files(path: str | Path) -> list[Path]:
    """The package's three table files (what `prepare` fingerprints beside the descriptor)."""
    path = Path(path)
    descriptor = _descriptor(path)
    return [resource_file(path, descriptor, name) for name in TABLES]


def _descriptor(path: Path) -> dict:
    try:
        descriptor = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not a readable datapackage.json: {err}") from None
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("resources"), list):
        raise UserError(f"{path} is not a Camtrap DP package: no 'resources' list")
    return descriptor


def resource_file(path: str | Path, descriptor: dict, name: str) -> Path:
    """The local file of the package's resource `name` (one of TABLES)."""
    path = Path(path)
    found = [r for r in descriptor["resources"] if isinstance(r, dict) and r.get("name") == name]
    if not found:
        raise UserError(f"{path} is not a Camtrap DP package: no '{name}' resource")
    file = found[0].get("path")
    if isinstance(file, list) and len(file) == 1:
        file = file[0]
    if not isinstance(file, str) or not file:
        raise UserError(f"{path}: resource '{name}' has no single 'path' (got {file!r})")
    if _URL.match(file):
        raise UserError(f"{path}: resource '{name}' is remote ({file}); download the package first")
    if not is_inside(file, path.parent):  # an untrusted descriptor must not name files elsewhere
        raise UserError(f"{path}: resource '{name}' path {file!r} lies outside the package folder")
    return path.parent / file


def _read_table(file: Path, name: str) -> pd.DataFrame:
    if not file.is_file():
        raise UserError(f"Camtrap DP table '{name}' not found: {file}")
    table = read_metadata_csv(file, dtype=str, keep_default_na=False)  # encoding, truncation: one line
    missing = [c for c in REQUIRED_COLUMNS[name] if c not in table.columns]
    if missing:
        raise UserError(f"Camtrap DP table {file} lacks column(s) {', '.join(missing)}; "
                        f"columns are {list(table.columns)[:12]}")
    table = table.apply(lambda column: column.str.strip())
    for column in OPTIONAL_COLUMNS[name]:
        if column not in table.columns:
            table[column] = ""
    return table


def _utc(values: pd.Series) -> pd.Series:
    """ISO 8601 timestamps (any offset) as UTC; NaT where unreadable."""
    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def media_paths(media: pd.DataFrame, image_root: str | Path) -> pd.Series:
    """Where each media file is expected under the image root (see the module doc)."""
    file_path = media["filePath"]
    file_name = media["fileName"]
    remote = file_path.str.match(_URL)
    named = remote & (file_name != "")
    by_name = file_name[named]
    if by_name.duplicated().any():
        by_name = media.loc[named, "deploymentID"] + "/" + by_name
        log.warning("media fileName values repeat in the package; media with a URL filePath are looked for "
                    "under <image root>/<deploymentID>/<fileName>")
    paths = file_path.where(~named, by_name.reindex(media.index))
    return relative_posix(paths, image_root)


def label_table(user_mapping_path: str | Path | None = None) -> dict[tuple[str, str], str]:
    """(scientificName lowercased, sex) -> class label, for names that map back to one label.

    A name shared by labels (Panthera leo: lionfemale, lionmale) is only reachable with its sex;
    sex "" then finds nothing, and the name becomes a label itself.
    """
    table = species.shipped_taxa()
    if user_mapping_path:
        table.update(species.read_taxa(user_mapping_path))
    labels: dict[tuple[str, str], list[str]] = {}
    for label, taxon in table.items():
        for sex in {taxon.sex, ""} if taxon else ():
            labels.setdefault((taxon.scientific_name.lower(), sex), []).append(label)
    return {key: names[0] for key, names in labels.items() if len(set(names)) == 1}


def observation_labels(observations: pd.DataFrame, user_mapping_path: str | Path | None = None) -> pd.Series:
    """The class label each observation gives (see the module doc)."""
    kind = observations["observationType"].str.lower()
    name, sex = observations["scientificName"], observations["sex"].str.lower()
    table = label_table(user_mapping_path)
    animal = [(table.get((n.lower(), s)) or table.get((n.lower(), "")) or canonical_species(n)) if n else "unknown"
              for n, s in zip(name, sex)]
    labels = kind.map(TYPE_LABELS).fillna("unknown")
    return labels.where(kind != "animal", pd.Series(animal, index=kind.index, dtype=object)).astype(str)


def _event_media(media: pd.DataFrame, events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(media row positions, event row positions): each media of an event's deployment whose
    timestamp lies in eventStart..eventEnd (inclusive). Sorted search per deployment, so a large
    package does not compare every media with every event."""
    media_rows, event_rows = [], []
    stamp = _utc(media["timestamp"])
    start, end = _utc(events["eventStart"]), _utc(events["eventEnd"])
    timed = (start.notna() & end.notna()).to_numpy()
    events_of = {deployment: positions.to_numpy() for deployment, positions in
                 pd.Series(np.arange(len(events))[timed]).groupby(events["deploymentID"].to_numpy()[timed])}
    for deployment, positions in pd.Series(np.arange(len(media))).groupby(media["deploymentID"].to_numpy()):
        chosen = positions.to_numpy()[stamp.iloc[positions.to_numpy()].notna().to_numpy()]
        if not len(chosen) or deployment not in events_of:
            continue
        times = stamp.iloc[chosen].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        order = np.argsort(times, kind="stable")
        chosen, times = chosen[order], times[order]
        for event in events_of[deployment]:
            low = np.searchsorted(times, start.iloc[event].value, side="left")
            high = np.searchsorted(times, end.iloc[event].value, side="right")
            media_rows.extend(chosen[low:high])
            event_rows.extend([event] * (high - low))
    return np.asarray(media_rows, dtype=np.int64), np.asarray(event_rows, dtype=np.int64)


def media_observations(media: pd.DataFrame, observations: pd.DataFrame) -> pd.DataFrame:
    """(mediaID, observation row, level) triples: a media's media-level observations, else the
    event-level ones whose deployment and time window hold it."""
    level = observations["observationLevel"].str.lower()
    own = observations[(level == "media") & (observations["mediaID"] != "")]
    own_pairs = pd.DataFrame({"mediaID": own["mediaID"].to_numpy(), "row": own.index.to_numpy()})
    covered = set(own_pairs["mediaID"])
    events = observations[level == "event"]
    media_rows, event_rows = _event_media(media, events) if len(events) else (np.array([], int), np.array([], int))
    event_pairs = pd.DataFrame({"mediaID": media["mediaID"].to_numpy()[media_rows],
                                "row": events.index.to_numpy()[event_rows]})
    event_pairs = event_pairs[~event_pairs["mediaID"].isin(covered)]
    return pd.concat([own_pairs.assign(level="media"), event_pairs.assign(level="event")], ignore_index=True)


def media_events(media: pd.DataFrame, observations: pd.DataFrame, pairs: pd.DataFrame) -> pd.Series:
    """Each media's eventID (its first observation's with one; `` when none)."""
    events = observations["eventID"].loc[pairs["row"]].to_numpy()
    event_of = pd.DataFrame({"mediaID": pairs["mediaID"], "event": events})
    event_of = event_of[event_of["event"] != ""].drop_duplicates("mediaID").set_index("mediaID")["event"]
    return lookup(media["mediaID"], event_of)


def _unique_media(tables: dict[str, pd.DataFrame], path) -> pd.DataFrame:
    """media.csv with a fresh index, refused when a mediaID repeats (observations could not say which)."""
    media = tables["media"].reset_index(drop=True)
    repeated = media["mediaID"][media["mediaID"].duplicated()]
    if len(repeated):
        raise UserError(f"{path}: mediaID {repeated.iloc[0]!r} is listed more than once in media.csv")
    return media


def read_camtrap_dp(metadata: Sequence[str], image_root: str, scientific_names: str | None = None,
                 on_event: events.EventSink = events.ignore) -> pd.DataFrame:
    """Reads one Camtrap DP package (its datapackage.json) into manifest columns (one row per media)."""
    if len(metadata) != 1:
        raise UserError(f"the Camtrap DP format takes one datapackage.json, got {list(metadata)}")
    _, tables = read_package(metadata[0])
    media, observations, deployments = _unique_media(tables, metadata[0]), tables["observations"], tables["deployments"]
    pairs = media_observations(media, observations)
    from_events = pairs.loc[pairs["level"] == "event", "mediaID"].nunique()
    if from_events:
        log.warning("%d media without media-level observations take the labels of the event-level observations "
                    "of their deployment whose eventStart..eventEnd holds their timestamp", from_events)
    labels = observation_labels(observations, scientific_names)
    species = species_by_key(pairs["mediaID"], labels.loc[pairs["row"]].reset_index(drop=True))
    species = lookup(media["mediaID"], species)

    capture = media_events(media, observations, pairs)
    capture = capture.where(capture != "", media["mediaID"])

    location = deployments.set_index("deploymentID")["locationID"]
    location = location[~location.index.duplicated()]
    site = lookup(media["deploymentID"], location)
    site = site.where(site != "", media["deploymentID"])

    stamp = _utc(media["timestamp"])
    frame = (pd.DataFrame({"capture": capture, "stamp": stamp}).groupby("capture")["stamp"]
             .rank(method="first").fillna(0).astype(int))
    drop = species.map(READER_DROPS).fillna("")
    mediatype = media["fileMediatype"].str.lower()
    drop = drop.where((mediatype == "") | mediatype.str.startswith("image/"), NOT_AN_IMAGE)
    return pd.DataFrame({
        "path": media_paths(media, image_root),
        "species": species,
        "capture_id": capture,
        "site": site,
        "datetime": media["timestamp"],
        "season": "",
        "frame": frame,
        "drop_reason": drop,
    })


def _number(text: str, default: float) -> float:
    """A CSV cell as a float: `default` when empty, NaN when not a number (a box problem then)."""
    if text is None or text == "":
        return default
    try:
        return float(text)
    except ValueError:
        return float("nan")


def is_package(path: str | Path) -> bool:
    """True for a file named datapackage.json (how `auto` and `--detections` recognise a package)."""
    return Path(path).name.lower() == "datapackage.json"


def media_table(path: str | Path) -> pd.DataFrame:
    """The package's image media for `predict`: mediaID, deploymentID, timestamp, `path` (relative to
    the package folder, as `prepare` resolves it with the package folder as image root), `file` (to
    open) and `capture_id` (the eventID of its observations, `` when none). Video and audio are left out.
    """
    path = Path(path)
    _, tables = read_package(path)
    media, observations = _unique_media(tables, path), tables["observations"]
    mediatype = media["fileMediatype"].str.lower()
    media = media[(mediatype == "") | mediatype.str.startswith("image/")].reset_index(drop=True)
    pairs = media_observations(media, observations)
    relative = media_paths(media, path.parent)
    return pd.DataFrame({"mediaID": media["mediaID"], "deploymentID": media["deploymentID"],
                         "timestamp": media["timestamp"], "path": relative,
                         "file": [path.parent / p for p in relative],
                         "capture_id": media_events(media, observations, pairs)})
