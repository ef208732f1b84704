"""Camtrap DP in (`prepare` source) and out (`predict --camtrap-dp-out`), and the scientific names."""

from __future__ import annotations

import io
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from serengeti_tf import config as cfg
from serengeti_tf import species
from serengeti_tf.data.detections import package_detections
from serengeti_tf.data.sources import MANIFEST_COLUMNS, detect_format, read_source
from serengeti_tf.data.sources.camtrap_dp import media_table, read_camtrap_dp
from serengeti_tf.errors import UserError

SCHEMAS = Path(__file__).parent / "data" / "camtrap_dp_1.0.2"
SCHEMA_URL = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/"
DEPLOYMENT_HEADER = ("deploymentID,locationID,locationName,latitude,longitude,coordinateUncertainty,deploymentStart,"
                     "deploymentEnd")
MEDIA_HEADER = "mediaID,deploymentID,captureMethod,timestamp,filePath,filePublic,fileName,fileMediatype"
OBSERVATION_HEADER = ("observationID,deploymentID,mediaID,eventID,eventStart,eventEnd,observationLevel,observationType,"
                      "scientificName,sex,bboxX,bboxY,bboxWidth,bboxHeight,classificationProbability")


# ---- scientific names -----------------------------------------------------------------------------

def test_every_paper_species_has_a_scientific_name_and_rank():
    labels = [species.canonical_species(n) for n in species.PAPER_SPECIES]
    taxa = species.taxa(labels)
    ranks = {"species", "genus", "subfamily", "family", "order", "class", "phylum"}
    for label, taxon in taxa.items():
        assert taxon is not None and taxon.rank in ranks, label
        words = taxon.scientific_name.split()
        assert words[0][0].isupper() and words[0][1:].islower(), taxon
        # A species rank is a binomial, every higher rank one capitalised word.
        assert len(words) == (2 if taxon.rank == "species" else 1), taxon
        if len(words) == 2:
            assert words[1].islower()


@pytest.mark.parametrize("label, name, rank", [
    ("wildebeest", "Connochaetes taurinus", "species"), ("zebra", "Equus quagga", "species"),
    ("gazelleThomsons", "Eudorcas thomsonii", "species"), ("gazelleGrants", "Nanger granti", "species"),
    ("otherBird", "Aves", "class"), ("birdother", "Aves", "class"), ("rodents", "Rodentia", "order"),
    ("mongoose", "Herpestidae", "family"), ("reptiles", "Reptilia", "class"),
    ("insectSpider", "Arthropoda", "phylum"), ("vervetMonkey", "Chlorocebus pygerythrus", "species"),
    ("hyenaSpotted", "Crocuta crocuta", "species"), ("lionFemale", "Panthera leo", "species"),
])
def test_scientific_names_of_known_labels(label, name, rank):
    assert species.scientific_names([label]) == {label: name}
    assert species.taxa([label])[label].rank == rank


def test_empty_and_unknown_labels_have_no_scientific_name():
    assert species.scientific_names(["empty", "blank", "antelope"]) == {"empty": None, "blank": None,
                                                                         "antelope": None}
    assert species.taxa(["lionmale"])["lionmale"].sex == "male"


def test_users_table_adds_and_replaces(tmp_path):
    path = tmp_path / "names.csv"
    path.write_text("label,scientificName\nantelope,Antilopinae\nZebra,Equus quagga boehmi\ngiraffe,\n")
    names = species.scientific_names(["antelope", "zebra", "giraffe", "impala"], path)
    assert names == {"antelope": "Antilopinae", "zebra": "Equus quagga boehmi", "giraffe": None,
                     "impala": "Aepyceros melampus"}


def test_users_table_without_the_columns_is_refused(tmp_path):
    path = tmp_path / "names.csv"
    path.write_text("species,name\nzebra,Equus\n")
    with pytest.raises(UserError, match="label,scientificName"):
        species.scientific_names(["zebra"], path)
    with pytest.raises(UserError, match="not found"):
        species.scientific_names(["zebra"], tmp_path / "absent.csv")


# ---- a small package ------------------------------------------------------------------------------

def write_package(folder: Path, media: list[str], observations: list[str], images: dict[str, int] | None = None,
                  deployments: list[str] | None = None) -> Path:
    """A Camtrap DP package in `folder`: CSV rows after the headers above; `images` writes small JPEGs
    (relative path -> colour index) so predict can read them."""
    folder.mkdir(parents=True, exist_ok=True)
    deployments = deployments or ["d1,loc1,,-2.3,34.8,10,2020-01-01T00:00:00Z,2020-02-01T00:00:00Z",
                                  "d2,loc1,,-2.3,34.8,10,2020-01-01T00:00:00Z,2020-02-01T00:00:00Z",
                                  "d3,,,-2.4,34.9,10,2020-01-01T00:00:00Z,2020-02-01T00:00:00Z"]
    for name, header, rows in (("deployments", DEPLOYMENT_HEADER, deployments), ("media", MEDIA_HEADER, media),
                               ("observations", OBSERVATION_HEADER, observations)):
        # Every column of the table schema, in its order (as the standard's packages have them).
        fields = [f["name"] for f in json.loads((SCHEMAS / f"{name}-table-schema.json").read_text())["fields"]]
        table = pd.read_csv(io.StringIO("\n".join([header, *rows]) + "\n"), dtype=str, keep_default_na=False)
        table.reindex(columns=fields, fill_value="").to_csv(folder / f"{name}.csv", index=False)
    resources = [{"name": n, "path": f"{n}.csv", "profile": "tabular-data-resource", "format": "csv",
                  "mediatype": "text/csv", "encoding": "utf-8", "schema": f"{SCHEMA_URL}{n}-table-schema.json"}
                 for n in ("deployments", "media", "observations")]
    (folder / "datapackage.json").write_text(json.dumps({
        "resources": resources, "profile": f"{SCHEMA_URL}camtrap-dp-profile.json", "name": "test-package",
        "created": "2024-01-01T00:00:00Z", "contributors": [{"title": "Tester"}],
        "project": {"title": "Test", "samplingDesign": "targeted", "captureMethod": ["activityDetection"],
                    "individualAnimals": False, "observationLevel": ["media", "event"]},
        "spatial": {"type": "Point", "coordinates": [34.8, -2.3]},
        "temporal": {"start": "2020-01-01", "end": "2020-02-01"}, "taxonomic": []}, indent=1))
    rng = np.random.default_rng(0)
    for relative, colour in (images or {}).items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((48, 64, 3), (colour * 60) % 256, np.uint8) + rng.integers(0, 20, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(target, format="JPEG")
    return folder / "datapackage.json"


def _row(frame: pd.DataFrame, path: str) -> pd.Series:
    return frame.set_index("path").loc[path]


@pytest.fixture
def mixed_package(tmp_path) -> Path:
    media = [
        "m1,d1,activityDetection,2020-01-05T10:00:00+02:00,media/a.jpg,false,a.jpg,image/jpeg",
        "m2,d1,activityDetection,2020-01-05T10:00:05+02:00,media/b.jpg,false,b.jpg,image/jpeg",
        "m3,d1,activityDetection,2020-01-05T10:00:09+02:00,media/c.jpg,false,c.jpg,image/jpeg",
        "m4,d1,activityDetection,2020-01-05T10:05:00+02:00,https://host/x/file,true,RCNX0001.JPG,image/jpeg",
        "m5,d2,activityDetection,2020-01-05T08:00:05Z,https://host/y/file,true,RCNX0001.JPG,image/jpeg",
        "m6,d3,activityDetection,2020-01-06T08:00:00Z,https://host/z/file,true,clip.mp4,video/mp4",
        "m7,d3,activityDetection,2020-01-06T09:00:00Z,media/g.jpg,false,g.jpg,image/jpeg",
        "m8,d3,activityDetection,2020-01-06T09:00:01Z,media/h.jpg,false,h.jpg,image/jpeg",
        "m9,d3,activityDetection,2020-01-06T09:00:02Z,media/i.jpg,false,i.jpg,image/jpeg",
        # No observation of their own: inside e1's window but on d2; on d1 but a second after e1 ends.
        "m10,d2,activityDetection,2020-01-05T08:00:03Z,media/j.jpg,false,j.jpg,image/jpeg",
        "m11,d1,activityDetection,2020-01-05T08:00:07Z,media/k.jpg,false,k.jpg,image/jpeg",
    ]
    observations = [
        # Event e1 on d1, 08:00:00..08:00:06 UTC: holds m1 and m2 (UTC+2 timestamps), not m3, and not
        # m5 (d2, same time); m2 has a media-level observation of its own, which wins.
        "o1,d1,,e1,2020-01-05T08:00:00Z,2020-01-05T08:00:06Z,event,animal,Equus quagga,,,,,,",
        "o2,d1,m2,e1,2020-01-05T08:00:05Z,2020-01-05T08:00:05Z,media,animal,Panthera leo,female,0.1,0.2,0.3,0.4,",
        "o3,d1,m3,e2,2020-01-05T08:00:09Z,2020-01-05T08:00:09Z,media,blank,,,,,,,",
        "o4,d1,m4,e3,2020-01-05T08:05:00Z,2020-01-05T08:05:00Z,media,animal,Ardea cinerea,,,,,,",
        "o5,d2,m5,e4,2020-01-05T08:00:05Z,2020-01-05T08:00:05Z,media,vehicle,,,,,,,",
        "o6,d3,m7,e5,2020-01-06T09:00:00Z,2020-01-06T09:00:00Z,media,human,Homo sapiens,,,,,,",
        "o7,d3,m8,e5,2020-01-06T09:00:01Z,2020-01-06T09:00:01Z,media,unknown,,,,,,,",
        "o8,d3,m9,e5,2020-01-06T09:00:02Z,2020-01-06T09:00:02Z,media,unclassified,,,,,,,",
        "o9,d3,m7,e5,2020-01-06T09:00:00Z,2020-01-06T09:00:00Z,media,animal,Syncerus caffer,,0.5,0.5,0.2,0.2,0.9",
    ]
    return write_package(tmp_path / "pkg", media, observations)


def test_labels_events_sites_and_paths(mixed_package, caplog):
    frame = read_camtrap_dp([str(mixed_package)], str(mixed_package.parent))
    assert "1 media without media-level observations take the labels of the event-level" in caplog.text
    assert len(frame) == 11
    assert _row(frame, "media/a.jpg")["species"] == "zebra"  # event-level, in its window
    assert _row(frame, "media/j.jpg")["species"] == "" and _row(frame, "media/k.jpg")["species"] == ""
    assert _row(frame, "media/b.jpg")["species"] == "lionfemale"  # its own media-level observation wins
    assert _row(frame, "media/c.jpg")["species"] == "empty"  # blank
    # fileName repeats across deployments: URL media are looked for under <deploymentID>/<fileName>
    assert _row(frame, "d1/RCNX0001.JPG")["species"] == "ardea_cinerea"
    assert _row(frame, "d2/RCNX0001.JPG")["drop_reason"] == "vehicle"
    assert _row(frame, "d3/clip.mp4")["drop_reason"] == "not_an_image"
    assert _row(frame, "media/g.jpg")["species"] == "buffalo+human"  # Syncerus caffer is `buffalo`
    assert _row(frame, "media/h.jpg")["drop_reason"] == "unknown"
    assert _row(frame, "media/i.jpg")["species"] == ""  # unclassified: unlabelled
    assert _row(frame, "media/a.jpg")["capture_id"] == "e1" and _row(frame, "media/b.jpg")["frame"] == 2
    assert _row(frame, "media/a.jpg")["site"] == "loc1" and _row(frame, "d2/RCNX0001.JPG")["site"] == "loc1"
    assert _row(frame, "media/g.jpg")["site"] == "d3"  # no locationID: the deployment


def test_read_source_detects_the_package_and_marks_drops(mixed_package):
    assert detect_format([str(mixed_package)], str(mixed_package.parent)) == "camtrap_dp"
    data = cfg.DataConfig(metadata=[str(mixed_package)], image_root=str(mixed_package.parent))
    frame = read_source(data)
    assert list(frame.columns) == list(MANIFEST_COLUMNS)
    reasons = frame.set_index("path")["drop_reason"]
    assert reasons["media/g.jpg"] == "multi_species" and reasons["media/i.jpg"] == "unlabelled"
    assert set(frame["source"]) == {"camtrap_dp"}


def test_prepare_fingerprints_the_package_tables(mixed_package):
    from serengeti_tf.data.prepare import fingerprint

    data = cfg.DataConfig(metadata=[str(mixed_package)], image_root=str(mixed_package.parent))
    before = fingerprint(data)
    table = mixed_package.parent / "observations.csv"
    table.write_text(table.read_text().replace("Equus quagga", "Connochaetes taurinus"))
    assert fingerprint(data)["metadata_tables"] != before["metadata_tables"]
    assert fingerprint(data)["metadata"] == before["metadata"]  # the descriptor itself did not change


def test_boxes_become_detections(mixed_package):
    found = package_detections(mixed_package, mixed_package.parent)
    assert len(found.images) == 11
    boxes = found.boxes.assign(file=found.images["file"].to_numpy()[found.boxes["image"]])
    assert boxes["file"].tolist() == ["media/b.jpg", "media/g.jpg"]
    assert boxes["category"].astype(str).tolist() == ["animal", "animal"]
    assert boxes["conf"].tolist() == pytest.approx([1.0, 0.9])
    assert boxes[["x", "y", "w", "h"]].iloc[0].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(resources=[]), "no 'deployments' resource"),
    (lambda d: d["resources"][1].update(path="https://example.org/media.csv"), "remote"),
    (lambda d: d["resources"][2].update(path="absent.csv"), "not found"),
])
def test_bad_packages_are_refused_in_one_line(mixed_package, change, message):
    descriptor = json.loads(mixed_package.read_text())
    change(descriptor)
    mixed_package.write_text(json.dumps(descriptor))
    with pytest.raises(UserError, match=message):
        read_camtrap_dp([str(mixed_package)], str(mixed_package.parent))


def test_a_table_without_its_columns_is_refused(mixed_package):
    (mixed_package.parent / "media.csv").write_text("mediaID,filePath\nm1,a.jpg\n")
    with pytest.raises(UserError, match="lacks column.*deploymentID"):
        read_camtrap_dp([str(mixed_package)], str(mixed_package.parent))


def test_fuzzed_packages_give_a_one_line_error_or_a_manifest(tmp_path_factory):
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from serengeti_tf.data.sources.camtrap_dp import REQUIRED_COLUMNS

    cell = st.sampled_from(["", "m1", "m2", "d1", "d2", "e1", "media", "event", "animal", "blank", "human",
                            "Equus quagga", "Panthera leo", "female", "2020-01-05T08:00:00Z",
                            "2020-01-05T10:00:00+02:00", "not a time", "0.5", "-3", "2", "a,b", '"', "https://h/x",
                            "../up.jpg", "/abs.jpg", "image/jpeg", "video/mp4", "\u00e9"])

    def table(data, header: str, name: str) -> str:
        # Optional columns may be absent; rows usually fit the header, sometimes not (ragged).
        columns = [c for c in header.split(",") if c in REQUIRED_COLUMNS[name] or data.draw(st.booleans())]
        rows = data.draw(st.lists(st.one_of(st.lists(cell, min_size=len(columns), max_size=len(columns)),
                                            st.lists(cell, max_size=len(columns) + 2)), max_size=6))
        return "\n".join([",".join(columns)] + [",".join(r) for r in rows]) + "\n"

    seen: list[str] = []

    @hypothesis.settings(max_examples=50, deadline=None, database=None)
    @hypothesis.given(data=st.data())
    def check(data):
        folder = tmp_path_factory.mktemp("fuzz")
        (folder / "deployments.csv").write_text("deploymentID,locationID\nd1,\nd2,l2\n")
        (folder / "media.csv").write_text(table(data, MEDIA_HEADER, "media"))
        (folder / "observations.csv").write_text(table(data, OBSERVATION_HEADER, "observations"))
        (folder / "datapackage.json").write_text(json.dumps({"resources": [
            {"name": n, "path": f"{n}.csv"} for n in ("deployments", "media", "observations")]}))
        outcomes = []
        for call in (lambda: read_camtrap_dp([str(folder / "datapackage.json")], str(folder)),
                     lambda: package_detections(folder / "datapackage.json", folder).images,
                     lambda: media_table(folder / "datapackage.json")):
            try:
                result = call()
            except UserError as err:
                assert "\n" not in str(err)
                outcomes.append("error")
                continue
            assert isinstance(result, pd.DataFrame)
            outcomes.append("read")
        seen.extend(outcomes)

    check()
    # Both ends were reached: packages read to a manifest, and packages refused in one line.
    assert {"read", "error"} <= set(seen), set(seen)


# ---- the standard's own example package -----------------------------------------------------------

@pytest.mark.slow
def test_the_standards_example_prepares_with_its_boxes(shared_data, tmp_path):
    from serengeti_tf.data.prepare import prepare_dataset

    package = shared_data / "other_formats" / "camtrap_dp_example"
    config = cfg.Config(data=cfg.DataConfig(metadata=[str(package / "datapackage.json")], image_root=str(package),
                                            detections=str(package / "datapackage.json"), image_size=64, workers=1))
    summary = prepare_dataset(config, tmp_path / "prepared", progress=False)
    manifest = pd.read_csv(tmp_path / "prepared" / "manifest.csv", dtype=str, keep_default_na=False)
    kept = manifest[manifest["drop_reason"] == ""]
    assert len(manifest) == 423 and summary["images_kept"] == 10
    assert sorted(kept["path"]) == sorted(f"media/{p.name}" for p in (package / "media").glob("*.JPG"))
    assert set(kept["species"]) == {"ardea"}  # the media-level observations say genus Ardea
    assert (manifest.loc[manifest["drop_reason"] != "", "drop_reason"] != "").all()
    assert summary["drops"]["missing_file"] > 0 and summary["drops"]["vehicle"] > 0
    crops = pd.read_csv(tmp_path / "prepared" / "crops.csv", keep_default_na=False)
    assert len(crops) == 10 and crops["box_w"].between(0, 1).all()


# ---- out: predict --camtrap-dp-out ----------------------------------------------------------------

def _validate(out: Path) -> None:
    """Validates the package in `out` against the vendored Camtrap DP 1.0.2 schemas, offline."""
    frictionless = pytest.importorskip("frictionless")
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    descriptor = json.loads((out / "datapackage.json").read_text())
    assert descriptor["profile"] == f"{SCHEMA_URL}camtrap-dp-profile.json"
    # The profile's Camtrap DP part; its references to the generic Data Package and GeoJSON schemas
    # (remote) are stubbed, the tables' rules are checked by frictionless below.
    profile = json.loads((SCHEMAS / "camtrap-dp-profile.json").read_text())
    stubs = Registry().with_resources([(url, Resource.from_contents({}, default_specification=DRAFT4))
                                       for url in ("https://specs.frictionlessdata.io/schemas/data-package.json",
                                                   "http://json.schemastore.org/geojson.json")])
    jsonschema.Draft4Validator(profile, registry=stubs).validate(descriptor)
    for resource in descriptor["resources"]:
        assert resource["schema"] == f"{SCHEMA_URL}{resource['name']}-table-schema.json"
        resource["schema"] = json.loads((SCHEMAS / f"{resource['name']}-table-schema.json").read_text())
    descriptor.pop("profile")
    report = frictionless.Package(descriptor, basepath=str(out)).validate()
    errors = [f"{task.name}: {e.message}" for task in report.tasks for e in task.errors]
    assert report.valid, errors[:5]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _predict_package(tmp_path) -> Path:
    media, observations, images = [], [], {}
    for i in range(6):
        name = f"media/img{i}.jpg"
        media.append(f"p{i},d{1 + i % 2},activityDetection,2020-01-0{1 + i}T10:00:00+03:00,{name},false,img{i}.jpg,"
                     "image/jpeg")
        images[name] = i
    media.append("p9,d1,timeLapse,2020-01-09T10:00:00+03:00,media/lost.jpg,false,lost.jpg,image/jpeg")
    observations = ["q1,d1,p0,ev1,2020-01-01T07:00:00Z,2020-01-01T07:00:00Z,media,animal,Syncerus caffer,,"
                    "0.1,0.1,0.5,0.5,",
                    "q2,d2,p1,ev2,2020-01-02T07:00:00Z,2020-01-02T07:00:00Z,media,animal,Acinonyx jubatus,,"
                    "0.3,0.2,0.4,0.6,"]
    return write_package(tmp_path / "input", media, observations, images)


def _predict_to_package(run: Path, tmp_path: Path, *options) -> tuple[Path, Path, pd.DataFrame]:
    """predict on `_predict_package` with --camtrap-dp-out: (input package, output folder, its
    observations), the output validated against the schemas."""
    from helpers import invoke_cli

    package = _predict_package(tmp_path)
    out = tmp_path / "camtrap_out"
    options = [package if option == "PACKAGE" else option for option in options]
    result = invoke_cli(["predict", run, package, "-o", tmp_path / "pred.csv", "--camtrap-dp-out", out, *options])
    assert result.exit_code == 0, result.output
    _validate(out)
    return package, out, pd.read_csv(out / "observations.csv", dtype=str, keep_default_na=False)


def test_predict_writes_a_valid_camtrap_dp_package(phase1_run, tmp_path, no_network):
    names = tmp_path / "names.csv"
    names.write_text("label,scientificName,taxonRank\nantelope,Antilopinae,subfamily\n")
    package, out, observations = _predict_to_package(phase1_run, tmp_path, "--scientific-names", names)
    assert len(observations) == 7
    lost = observations[observations["mediaID"] == "p9"].iloc[0]
    assert lost["observationType"] == "unclassified" and "file not found" in lost["observationComments"]
    done = observations[observations["mediaID"] != "p9"]
    assert set(done["classificationMethod"]) == {"machine"} and (done["observationLevel"] == "media").all()
    assert done["classifiedBy"].str.startswith("serengeti-tf ").all()
    assert done["classificationProbability"].astype(float).between(0, 1).all()
    assert (done["eventStart"] == done["eventEnd"]).all()
    first = done[done["mediaID"] == "p0"].iloc[0]
    assert first["eventStart"] == "2020-01-01T10:00:00+03:00" and first["eventID"] == "ev1"
    predictions = pd.read_csv(tmp_path / "pred.csv", keep_default_na=False)
    expected = {"antelope": "Antilopinae", "buffalo": "Syncerus caffer", "cheetah": "Acinonyx jubatus",
                "dikdik": "Madoqua"}
    by_media = done.set_index("mediaID")
    for path, label in zip(predictions["path"], predictions["predicted"]):
        row = by_media.loc["p" + Path(path).stem.removeprefix("img")]
        assert row["scientificName"] == expected[label] and row["observationTags"] == f"classLabel:{label}"
    assert (out / "media.csv").read_bytes() == (package.parent / "media.csv").read_bytes()
    descriptor = json.loads((out / "datapackage.json").read_text())
    assert {t["scientificName"] for t in descriptor["taxonomic"]} == {expected[p] for p in predictions["predicted"]}
    # The validation can fail: a probability above 1 and an unknown mediaID are caught.
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    bad = observations.copy()
    bad.loc[0, "classificationProbability"], bad.loc[1, "mediaID"] = "1.5", "no-such-media"
    bad.to_csv(broken / "observations.csv", index=False)
    with pytest.raises(AssertionError, match="observations"):
        _validate(broken)
    # A rerun with the same inputs finds its predictions done and writes the same package again.
    from helpers import invoke_cli

    again = invoke_cli(["predict", phase1_run, package, "-o", tmp_path / "pred.csv", "--camtrap-dp-out", out,
                        "--scientific-names", names])
    assert again.exit_code == 0, again.output
    rewritten = pd.read_csv(out / "observations.csv", dtype=str, keep_default_na=False)
    when = "classificationTimestamp"
    assert rewritten.drop(columns=when).equals(observations.drop(columns=when))


def test_predict_crops_write_boxes(phase1_run, tmp_path, no_network):
    _, _, observations = _predict_to_package(phase1_run, tmp_path, "--detections", "PACKAGE")
    boxed = observations[observations["bboxX"] != ""].set_index("mediaID")
    assert sorted(boxed.index) == ["p0", "p1"]
    assert boxed.loc["p1", ["bboxX", "bboxY", "bboxWidth", "bboxHeight"]].astype(float).tolist() == \
        pytest.approx([0.3, 0.2, 0.4, 0.6])
    others = observations[~observations["mediaID"].isin(["p0", "p1", "p9"])]
    assert set(others["observationType"]) == {"blank"}  # no box: no detection


def test_observation_rows_per_label_kind(tmp_path):
    from serengeti_tf.evaluate.camtrap_dp_out import OBSERVATION_FIELDS, observation_rows

    media = pd.DataFrame({"path": [f"m/{i}.jpg" for i in range(6)], "mediaID": [f"x{i}" for i in range(6)],
                          "deploymentID": "d1", "timestamp": "2020-01-01T10:00:00Z", "capture_id": ["e1"] * 6})
    predictions = pd.DataFrame({"path": [f"m/{i}.jpg" for i in range(5)],
                                "predicted": ["lionFemale", "empty", "human", "antelope", "otherbird"],
                                "confidence": [0.9, 0.8, 0.7, 0.6, 0.51234567]})
    skipped = pd.DataFrame({"path": ["m/5.jpg", "not/in/package.jpg"], "error": ["unreadable image: x", "gone"]})
    names = tmp_path / "names.csv"
    names.write_text("label,scientificName\nantelope,Antilopinae\n")
    taxa = species.taxa(["lionFemale", "empty", "human", "antelope", "otherbird"], names)
    rows = observation_rows(media, predictions, None, skipped, taxa, "model X", "2024-01-01T00:00:00Z")
    assert list(rows.columns) == list(OBSERVATION_FIELDS)
    assert rows["observationID"].tolist() == [f"x{i}_stf" for i in range(6)]
    assert rows["observationType"].tolist() == ["animal", "blank", "human", "animal", "animal", "unclassified"]
    assert rows["scientificName"].tolist() == ["Panthera leo", "", "Homo sapiens", "Antilopinae", "Aves", ""]
    assert rows["sex"].tolist() == ["female", "", "", "", "", ""]
    assert rows["classificationProbability"].tolist() == ["0.9", "0.8", "0.7", "0.6", "0.512346", ""]
    assert rows["classifiedBy"].tolist() == ["model X"] * 5 + [""]
    assert rows["observationComments"].iloc[5] == "not classified: unreadable image: x"
    assert (rows["eventID"] == "e1").all() and (rows["bboxX"] == "").all()


def test_a_run_trained_on_a_package_names_its_labels_from_it(mixed_package, tmp_path):
    from serengeti_tf.evaluate.camtrap_dp_out import dataset_taxa
    from serengeti_tf.io_utils import write_json

    dataset, run = tmp_path / "prepared", tmp_path / "run"
    dataset.mkdir()
    run.mkdir()
    cfg.save_config(cfg.Config(data=cfg.DataConfig(metadata=[str(mixed_package)], image_root=str(tmp_path))), dataset)
    write_json(run / "lineage.json", {"dataset_dir": str(dataset)})
    learnt = dataset_taxa(run / "model.keras")
    assert learnt["ardea_cinerea"].scientific_name == "Ardea cinerea"
    assert learnt["syncerus_caffer"].scientific_name == "Syncerus caffer"
    mixed_package.rename(tmp_path / "moved.json")  # the package is gone: nothing learnt, no error
    assert dataset_taxa(run / "model.keras") == {}
    assert dataset_taxa(tmp_path / "bare.keras") == {}


def test_camtrap_dp_out_needs_a_package_input(phase1_run, tmp_path):
    from helpers import invoke_cli

    folder = tmp_path / "images"
    folder.mkdir()
    result = invoke_cli(["predict", phase1_run, folder, "-o", tmp_path / "pred.csv", "--camtrap-dp-out",
                         tmp_path / "out"])
    assert result.exit_code != 0 and "datapackage.json" in result.output
    assert not (tmp_path / "pred.csv").exists()


def test_camtrap_dp_out_may_not_overlap_the_input(phase1_run, tmp_path):
    from helpers import invoke_cli

    package = _predict_package(tmp_path)
    result = invoke_cli(["predict", phase1_run, package, "-o", tmp_path / "pred.csv", "--camtrap-dp-out",
                         package.parent / "out"])
    assert result.exit_code != 0 and "lies inside" in result.output


def test_camtrap_dp_out_refuses_a_folder_of_other_files_before_predicting(phase1_run, tmp_path):
    from helpers import invoke_cli

    package = _predict_package(tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    result = invoke_cli(["predict", phase1_run, package, "-o", tmp_path / "pred.csv", "--camtrap-dp-out",
                         tmp_path / "taken"])
    assert result.exit_code != 0 and "already holds other files" in result.output
    assert not (tmp_path / "pred.csv").exists() and (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_a_resource_path_outside_the_package_folder_is_refused(tmp_path):
    from serengeti_tf.data.sources import camtrap_dp

    (tmp_path / "elsewhere.csv").write_text("a,b\n1,2\n")
    package = tmp_path / "pkg" / "datapackage.json"
    package.parent.mkdir()
    descriptor = {"resources": [{"name": name, "path": "../elsewhere.csv"}
                                for name in ("deployments", "media", "observations")]}
    package.write_text(json.dumps(descriptor))
    with pytest.raises(UserError, match="outside the package folder"):
        camtrap_dp.read_package(package)


def test_a_truncated_or_latin1_table_is_one_line_error(tmp_path):
    from serengeti_tf.data.sources import camtrap_dp

    package = write_package(tmp_path / "pkg", [], [])
    observations = package.parent / "observations.csv"
    header = observations.read_text()
    observations.write_text(header + "o1,d1")  # cut off mid-row, no final newline
    with pytest.raises(UserError, match="cut off|truncated|mid-row"):
        camtrap_dp.read_package(package)
    observations.write_bytes(header.encode() + "o1,d1,m1,,,,,,,,,Gen\xe8ve\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        camtrap_dp.read_package(package)
