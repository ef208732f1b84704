"""`prepare` with object-store URLs (`storage.py`, `remote_output.py`), on fsspec's in-memory filesystem.

`memory://` lives in this process only, so the local runner uses one worker here (`workers: 1`) and
Beam runs `in_memory`; real stores (gs://, s3://) are shared by every process and need neither.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from helpers import make_csv_source, prepare_config, prepare_locally, raises_as_cli, shard_bytes

from serengeti_tf.data import storage
from serengeti_tf.data.prepare import prepare_dataset
from serengeti_tf.errors import UserError

MISSING = "wildebeest/wildebeest_c1_f2.jpg"  # listed in the metadata, absent from the store


@pytest.fixture(autouse=True)
def staging_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SERENGETI_TF_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def local_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("source")
    metadata = make_csv_source(root)
    (root / MISSING).unlink()
    return root, metadata


@pytest.fixture(scope="module")
def local_prepared(local_source, tmp_path_factory):
    return prepare_locally(*local_source, tmp_path_factory.mktemp("local") / "ds")


@pytest.fixture
def bucket():
    """A fresh `memory://` bucket; emptied afterwards (the store is shared by the whole process)."""
    name = f"memory://bucket-{uuid.uuid4().hex[:8]}"
    yield name
    fs, inner = storage.filesystem(name)
    if fs.exists(inner):
        fs.rm(inner, recursive=True)


def upload_source(local_root: Path, url: str) -> str:
    fs, inner = storage.filesystem(url)
    for path in sorted(local_root.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{inner}/{path.relative_to(local_root).as_posix()}")
    return url


def remote_config(src: str, **data):
    return prepare_config(src, f"{src}/labels.csv", **data)


def objects(url: str) -> dict[str, str]:
    """sha256 of every object under `url`, by relative path."""
    fs, inner = storage.filesystem(url)
    return {p[len(inner) + 1:]: hashlib.sha256(fs.cat_file(p)).hexdigest() for p in fs.find(inner)}


def shard_objects(url: str) -> dict[str, str]:
    return {k: v for k, v in objects(url).items() if k.startswith("camera_traps-")}


def test_storage_paths_join_urls_without_eating_slashes():
    assert storage.is_url("gs://b/x") and storage.is_url("memory://b") and not storage.is_url("/data/x")
    assert storage.image_location("gs://bucket/root/", "S1/a.jpg") == "gs://bucket/root/S1/a.jpg"
    assert storage.image_location("/data/root", "S1/a.jpg") == str(Path("/data/root/S1/a.jpg"))
    with pytest.raises(UserError, match="nosuchproto://"):
        storage.is_file("nosuchproto://x/y")


def test_remote_inputs_and_output_give_the_local_dataset(local_source, local_prepared, bucket):
    src = upload_source(local_source[0], f"{bucket}/src")
    before = objects(src)
    out = f"{bucket}/out"
    summary = prepare_dataset(remote_config(src), out, progress=False)
    assert summary["drops"]["missing_file"] == 1 and summary["drops"]["corrupt_image"] == 1
    assert shard_objects(out) == shard_bytes(local_prepared)
    for name in ("manifest.csv", "counts.csv", "splits.csv", "shards.json", "class_map.json", "features.json"):
        assert storage.read_bytes(f"{out}/{name}") == (local_prepared / name).read_bytes(), name
    assert {"summary.json", "dataset_info.json", "fingerprint.json", ".serengeti-tf-files"} <= set(objects(out))
    assert objects(src) == before  # no source object modified
    assert prepare_dataset(remote_config(src), out, progress=False)["up_to_date"] is True


def test_an_interrupted_remote_prepare_resumes(local_source, local_prepared, bucket):
    """No summary.json and a shard missing (as a kill leaves it): the rerun writes that shard only."""
    src = upload_source(local_source[0], f"{bucket}/src")
    out = f"{bucket}/out"
    prepare_dataset(remote_config(src), out, progress=False)
    fs, inner = storage.filesystem(out)
    lost = sorted(shard_objects(out))[2]
    fs.rm_file(f"{inner}/{lost}")
    fs.rm_file(f"{inner}/summary.json")
    created = {p: fs.info(p)["created"] for p in fs.find(inner) if p.startswith(f"{inner}/camera_traps-")}
    summary = prepare_dataset(remote_config(src), out, progress=False)
    assert summary["resumed"] is True and summary["up_to_date"] is False
    assert shard_objects(out) == shard_bytes(local_prepared)
    assert {p: fs.info(p)["created"] for p in created} == created  # the others were not rewritten


def test_remote_output_refusals_and_overwrite(local_source, bucket):
    src = upload_source(local_source[0], f"{bucket}/src")
    out = f"{bucket}/out"
    prepare_dataset(remote_config(src), out, progress=False)
    with pytest.raises(UserError, match="differs in: image_size"):
        prepare_dataset(remote_config(src, image_size=20), out, progress=False)
    fs, inner = storage.filesystem(out)
    fs.pipe_file(f"{inner}/notes.txt", b"mine")
    summary = prepare_dataset(remote_config(src, image_size=20), out, overwrite=True, progress=False)
    assert summary["image_size"] == 20 and storage.read_bytes(f"{out}/notes.txt") == b"mine"
    assert storage.read_json(f"{out}/summary.json")["image_size"] == 20
    foreign = f"{bucket}/foreign"
    storage.write_bytes(f"{foreign}/data.bin", b"x")
    with pytest.raises(UserError, match="not written by serengeti-tf"):
        prepare_dataset(remote_config(src), foreign, overwrite=True, progress=False)
    with raises_as_cli(match="overlaps the input --image-root"):
        prepare_dataset(remote_config(src), f"{src}/prepared", progress=False)


def test_local_output_from_remote_inputs(local_source, local_prepared, bucket, tmp_path):
    src = upload_source(local_source[0], f"{bucket}/src")
    prepare_dataset(remote_config(src), tmp_path / "ds", progress=False)
    assert shard_bytes(tmp_path / "ds") == shard_bytes(local_prepared)


@pytest.mark.beam
def test_beam_runner_with_remote_inputs_and_output(local_source, local_prepared, bucket):
    pytest.importorskip("apache_beam")
    src = upload_source(local_source[0], f"{bucket}/src")
    out = f"{bucket}/out"
    summary = prepare_dataset(remote_config(src, runner="beam", beam_options="--direct_running_mode=in_memory"),
                              out, progress=False)
    assert summary["drops"]["missing_file"] == 1
    assert shard_objects(out) == shard_bytes(local_prepared)
    assert not [k for k in objects(out) if "beam-plan" in k]

