"""`predict --camtrap-dp-out FOLDER`: predictions as a Camtrap DP 1.0 package (observations by machine).

Input: the finished `predict` outputs (OUT.csv, and OUT.crops.csv with `--detections`) of a Camtrap DP
package given as INPUT (its `datapackage.json`). FOLDER receives:

    datapackage.json   the input's descriptor: resources deployments / media / observations with the
                       Camtrap DP 1.0.2 schema URLs, `created` now, `taxonomic` = the predicted taxa,
                       `project.observationLevel` ["media"]; everything else as the input has it
    deployments.csv    copied from the input, byte for byte
    media.csv          copied from the input, byte for byte (relative `filePath`s point into the input
                       package's folder: keep the output beside the media, or copy `media/`, to publish)
    observations.csv   the machine observations only, one per classified image (whole-frame predict) or
                       one per crop with its box (`--detections`), columns in Camtrap DP 1.0 order

Each observation: `observationLevel` media; `eventStart` = `eventEnd` = the media's timestamp (as
the standard's own media-level rows do); `eventID` the media's event in the input (`` when none);
`observationType` animal, or blank / human / vehicle for those labels, blank for an image without a
detection (`--detections`; `classifiedBy` then names the detections file), unclassified for an image
predict skipped (the reason in `observationComments`); `scientificName` and `sex` from `species.taxa`
(the user's CSV, then the shipped Snapshot Serengeti table, then, for a run trained on a Camtrap DP
package, that package's own scientificName of the label: `ardea_cinerea` -> Ardea cinerea);
`classificationMethod` machine; `classifiedBy` serengeti-tf, its version, the model and its sha256;
`classificationTimestamp` when written; `classificationProbability` the top-1 probability;
`observationTags` `classLabel:<the model's label>` (labels without a scientific name keep theirs
there). The input's own observations are not copied:
to have both, append this observations.csv's rows (without its header) to the input's.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

from serengeti_tf import __version__, io_utils, run_folder, species
from serengeti_tf import config as cfg
from serengeti_tf.data.sources.camtrap_dp import is_package, media_table, read_package, resource_file
from serengeti_tf.errors import UserError, setting
from serengeti_tf.evaluate.run_reader import read_lineage
from serengeti_tf.run_folder import DatasetFolder
from serengeti_tf.species import Taxon, canonical_species, read_taxa

SCHEMA_BASE = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/"
PROFILE_URL = SCHEMA_BASE + "camtrap-dp-profile.json"
OBSERVATION_FIELDS = (
    "observationID", "deploymentID", "mediaID", "eventID", "eventStart", "eventEnd", "observationLevel",
    "observationType", "cameraSetupType", "scientificName", "count", "lifeStage", "sex", "behavior",
    "individualID", "individualPositionRadius", "individualPositionAngle", "individualSpeed", "bboxX", "bboxY",
    "bboxWidth", "bboxHeight", "classificationMethod", "classifiedBy", "classificationTimestamp",
    "classificationProbability", "observationTags", "observationComments",
)
# Labels whose observation is not of an animal (Camtrap DP observationType).
TYPE_OF_LABEL = {"empty": "blank", "human": "human", "vehicle": "vehicle"}
MARKER = ".serengeti-tf-camtrap-dp.json"


def check_request(inputs, out_dir: str | Path, other_inputs: Mapping[str, Any], overwrite: bool = False,
                  scientific_names: str | Path | None = None) -> Path:
    """Refuses, before any prediction, an INPUT that is not a Camtrap DP package, an unreadable
    scientific-names CSV, an output folder that overlaps an input, and (without `overwrite`) a
    non-empty folder that does not hold this input's package. Returns the input's datapackage.json."""
    if scientific_names:
        read_taxa(scientific_names)

    if isinstance(inputs, (list, tuple)) or not is_package(inputs) or not Path(inputs).is_file():
        raise UserError(f"{setting('camtrap_dp_out')} needs INPUT to be a Camtrap DP package's datapackage.json (its "
                        "media "
                        f"give deploymentID, mediaID and timestamps), got {inputs}")
    package, out = Path(inputs), Path(out_dir)
    io_utils.check_output_path(out)
    io_utils.refuse_overlap(out, {"INPUT package folder": package.parent, **other_inputs},
                            what=f"{setting('camtrap_dp_out')} folder")
    if overwrite or not io_utils.has_content(out):
        return package
    marker = out / MARKER
    stored = io_utils.read_json(marker) if marker.is_file() else {}
    if not isinstance(stored, dict) or stored.get("package") != str(package.resolve()):
        raise UserError(f"{setting('camtrap_dp_out')} folder {out} already holds other files (not this input's "
                        "package); "
                        f"choose another folder or pass {setting('overwrite')}")
    return package


def classified_by(model_path: str | Path, model_sha256: str) -> str:
    model = Path(model_path)
    name = model.parent.name if model.name == run_folder.MODEL else model.name
    return f"serengeti-tf {__version__} model {name} (sha256 {model_sha256[:12]})"


def _taxon_columns(labels: pd.Series, taxa: Mapping[str, Any]) -> pd.DataFrame:
    """observationType, scientificName, sex and observationTags of each predicted label."""
    kinds, names, sexes = [], [], []
    for label in labels:
        taxon = taxa.get(label)
        kinds.append(TYPE_OF_LABEL.get(label, "animal"))
        names.append(taxon.scientific_name if taxon else "")
        sexes.append(taxon.sex if taxon else "")
    return pd.DataFrame({"observationType": kinds, "scientificName": names, "sex": sexes,
                         "observationTags": "classLabel:" + labels.astype(str).to_numpy()}, index=labels.index)


def observation_rows(media: pd.DataFrame, predictions: pd.DataFrame, crops: Optional[pd.DataFrame],
                     skipped: pd.DataFrame, taxa: Mapping[str, Any], by: str, when: str,
                     detector: str = "") -> pd.DataFrame:
    """The observations table (pure): `media` from `camtrap_dp.media_table`; `predictions`, `crops`,
    `skipped` as predict writes them (crops None for whole-frame predictions); `by` the classifier's
    `classifiedBy`, `detector` that of the blanks of images without a detection."""
    info = media.set_index("path")
    rows = []
    if crops is None:
        done = predictions.assign(crop=-1, box_x=np.nan, box_y=np.nan, box_w=np.nan, box_h=np.nan, comment="", by=by)
    else:
        blank = predictions[predictions.get("status", pd.Series(dtype=str)) == "empty"]
        done = pd.concat([crops.assign(comment="", by=by), blank.assign(
            crop=-1, predicted="empty", confidence=np.nan, box_x=np.nan, box_y=np.nan, box_w=np.nan, box_h=np.nan,
            comment="no detection above the detection threshold", by=detector or by)], ignore_index=True)
    done = done[done["path"].isin(info.index)]
    rows.append(pd.concat([done.reset_index(drop=True),
                           _taxon_columns(done["predicted"].astype(str).reset_index(drop=True), taxa)], axis=1))
    lost = skipped[skipped["path"].isin(info.index)]
    if len(lost):
        rows.append(pd.DataFrame({"path": lost["path"].to_numpy(), "crop": -1, "confidence": np.nan,
                                  "box_x": np.nan, "box_y": np.nan, "box_w": np.nan, "box_h": np.nan,
                                  "observationType": "unclassified", "scientificName": "", "sex": "",
                                  "observationTags": "", "by": "",
                                  "comment": "not classified: " + lost["error"].astype(str).to_numpy()}))
    table = pd.concat(rows, ignore_index=True)
    table = table.sort_values(["path", "crop"], kind="stable").reset_index(drop=True)
    own = info.loc[table["path"]]
    crop = table["crop"].astype(int).to_numpy()
    suffix = np.where(crop >= 0, np.char.add("_stf", (crop + 1).astype(str)), "_stf")
    out = pd.DataFrame({field: "" for field in OBSERVATION_FIELDS}, index=table.index)
    out["observationID"] = np.char.add(own["mediaID"].to_numpy().astype(str), suffix)
    out["deploymentID"] = own["deploymentID"].to_numpy()
    out["mediaID"] = own["mediaID"].to_numpy()
    out["eventID"] = own["capture_id"].to_numpy()
    out["eventStart"] = out["eventEnd"] = own["timestamp"].to_numpy()
    out["observationLevel"] = "media"
    for column in ("observationType", "scientificName", "sex", "observationTags"):
        out[column] = table[column].to_numpy()
    for field, column in (("bboxX", "box_x"), ("bboxY", "box_y"), ("bboxWidth", "box_w"), ("bboxHeight", "box_h")):
        out[field] = _numbers(table[column])
    classified = out["observationType"] != "unclassified"
    out["classificationMethod"] = np.where(classified, "machine", "")
    out["classifiedBy"] = np.where(classified, table["by"].astype(str), "")
    out["classificationTimestamp"] = np.where(classified, when, "")
    out["classificationProbability"] = _numbers(table["confidence"])
    out["observationComments"] = table["comment"].to_numpy()
    return out


def _numbers(values: pd.Series) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    return np.where(numbers.notna(), numbers.round(6).astype(str), "")


def descriptor(source: Mapping[str, Any], taxa_used: Mapping[str, Any], created: str) -> dict:
    """The output datapackage.json: the input's metadata, the three resources, the predicted taxa."""
    out = {k: v for k, v in source.items() if k != "resources"}
    out["resources"] = [{"name": name, "path": f"{name}.csv", "profile": "tabular-data-resource", "format": "csv",
                         "mediatype": "text/csv", "encoding": "utf-8",
                         "schema": f"{SCHEMA_BASE}{name}-table-schema.json"}
                        for name in ("deployments", "media", "observations")]
    out["profile"] = PROFILE_URL
    out["created"] = created
    project = dict(out.get("project") or {})
    project["observationLevel"] = ["media"]
    out["project"] = project
    taxonomic = []
    for taxon in sorted({t.scientific_name: t for t in taxa_used.values() if t}.values(),
                        key=lambda t: t.scientific_name):
        entry = {"scientificName": taxon.scientific_name}
        if taxon.rank:
            entry["taxonRank"] = taxon.rank
        if taxon.vernacular_name:
            entry["vernacularNames"] = {"eng": taxon.vernacular_name}
        taxonomic.append(entry)
    out["taxonomic"] = taxonomic
    return out


def dataset_taxa(model_path: str | Path) -> dict[str, Any]:
    """Labels a run learnt from a Camtrap DP package -> Taxon of the package's own scientificName
    (`ardea_cinerea` -> Ardea cinerea), read back from that package; {} when the run's dataset was
    not prepared from one or the package is no longer where it was."""
    model = Path(model_path)
    try:
        dataset = DatasetFolder(Path(read_lineage(model.parent).dataset_dir or "")) \
            if model.name == run_folder.MODEL else None
        if dataset is None or not dataset.config.is_file():
            return {}
        data = cfg.load_saved(dataset.config).data
        if data.source_format not in ("auto", "camtrap_dp") or len(data.metadata) != 1 or \
                not is_package(data.metadata[0]) or not Path(data.metadata[0]).is_file():
            return {}
        _, tables = read_package(data.metadata[0])
    except UserError:
        return {}
    names = tables["observations"]["scientificName"]
    return {canonical_species(n): Taxon(n) for n in sorted(set(names[names != ""]))}


def _read(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"path": str}, keep_default_na=False)


def write_camtrap_dp(out_dir: str | Path, package: str | Path, outputs: Mapping[str, str],
                     scientific_names: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Writes FOLDER (see the module doc) from predict's `outputs` (paths by name: predictions,
    skipped, meta, and crops with --detections). Returns counts and the folder."""
    out, package = Path(out_dir), Path(package)
    source, _ = read_package(package)
    meta = io_utils.read_json(outputs["meta"])
    model_sha256 = meta["fingerprint"]["model_sha256"]
    predictions, skipped = _read(outputs["predictions"]), _read(outputs["skipped"])
    crops = _read(outputs["crops"]) if outputs.get("crops") else None
    fingerprint = {"kind": "serengeti-tf predict --camtrap-dp-out", "package": str(package.resolve()),
                   "package_sha256": io_utils.file_digest(package), "model_sha256": model_sha256,
                   "predictions_sha256": io_utils.file_digest(outputs["predictions"]),
                   "scientific_names": io_utils.file_digest(scientific_names) if scientific_names else ""}
    io_utils.claim_output_dir(out, fingerprint, overwrite=overwrite, marker=MARKER, kind="camtrap dp package")

    labels = sorted(set(predictions.get("predicted", pd.Series(dtype=str)).astype(str))
                    | set(crops["predicted"].astype(str) if crops is not None else []))
    taxa = species.taxa(labels, scientific_names)
    if not all(taxa.get(label) for label in labels if label not in TYPE_OF_LABEL):
        learnt = dataset_taxa(meta["model"])
        taxa = {label: taxon or learnt.get(label) for label, taxon in taxa.items()}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    detector = (f"detector boxes of {Path(meta['detections']).name} (data.crops settings), via serengeti-tf"
                if meta.get("detections") else "")
    observations = observation_rows(media_table(package), predictions, crops, skipped, taxa,
                                    classified_by(meta["model"], model_sha256), now, detector)
    used = {label: taxa.get(label) for label in set(observations["observationTags"].str.removeprefix("classLabel:"))}
    for name in ("deployments", "media"):
        io_utils.write_bytes(out / f"{name}.csv", resource_file(package, source, name).read_bytes())
    io_utils.write_csv(out / "observations.csv", observations)
    io_utils.write_text(out / "datapackage.json", json.dumps(descriptor(source, used, now), indent=2,
                                                             ensure_ascii=False) + "\n")
    counts = observations["observationType"].value_counts()
    return {"folder": str(out), "observations": int(len(observations)),
            "types": {str(k): int(v) for k, v in counts.items()},
            "without_scientific_name": sorted(label for label, taxon in used.items()
                                              if taxon is None and label and label not in TYPE_OF_LABEL)}


def summary_text(result: Mapping[str, Any]) -> str:
    types = ", ".join(f"{k} {v}" for k, v in result["types"].items())
    line = f"Camtrap DP package: {result['folder']} ({result['observations']} observations: {types})"
    missing = result["without_scientific_name"]
    if missing:
        line += (f"\n  no scientific name for {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}: "
                 f"give {setting('scientific_names')} label,scientificName CSV")
    return line
