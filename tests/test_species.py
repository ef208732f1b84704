"""Canonical species names and the paper's display names."""

from __future__ import annotations

import csv

import pytest

from serengeti_tf.species import PAPER_SPECIES, PAPER_TRAIN_COUNTS, canonical_species, paper_name


@pytest.mark.parametrize("raw, canonical", [
    ("gazelleThomsons", "gazellethomsons"),
    ("gazellethomsons", "gazellethomsons"),
    ("  otherBird\n", "otherbird"),
    ("birdother", "otherbird"),
    ("birdOther", "otherbird"),
    ("blank", "empty"),
    ("Blank", "empty"),
    ("empty", "empty"),
    ("vervetMonkey", "monkeyvervet"),
    ("vervetmonkey", "monkeyvervet"),
    ("monkeyvervet", "monkeyvervet"),
    ("human", "human"),
    ("lionFemale", "lionfemale"),
    ("Gazelle Thomsons", "gazellethomsons"),
    ("Virginia Opossum", "virginia_opossum"),
    ("PBE", "pbe"),
])
def test_canonical_species(raw, canonical):
    assert canonical_species(raw) == canonical


def test_canonical_species_rejects_non_strings():
    with pytest.raises(TypeError, match="got 3"):
        canonical_species(3)


def test_paper_species_are_the_52_names_in_the_paper_order(shared_data):
    with open(shared_data.parent / "paper" / "s9_class_counts.csv", newline="") as f:
        names = [row["species"] for row in csv.DictReader(f)]
    assert list(PAPER_SPECIES) == names


def test_paper_train_counts_are_table_4s(shared_data):
    with open(shared_data.parent / "paper" / "s9_class_counts.csv", newline="") as f:
        train = [int(row["train"]) for row in csv.DictReader(f)]
    assert list(PAPER_TRAIN_COUNTS) == train
    assert sum(PAPER_TRAIN_COUNTS) == 155254 and PAPER_TRAIN_COUNTS == tuple(sorted(PAPER_TRAIN_COUNTS, reverse=True))


def test_paper_species_has_52_distinct_names():
    assert len(PAPER_SPECIES) == 52 and len(set(PAPER_SPECIES)) == 52


def test_paper_name_round_trips_every_paper_species():
    canonicals = [canonical_species(n) for n in PAPER_SPECIES]
    assert len(set(canonicals)) == 52
    assert [paper_name(c) for c in canonicals] == list(PAPER_SPECIES)


@pytest.mark.parametrize("canonical, paper", [
    ("gazellethomsons", "gazelleThomsons"), ("monkeyvervet", "vervetMonkey"), ("otherbird", "otherBird"),
    ("dikdik", "dikDik"), ("zebra", "zebra"),
    # Outside the paper's 52 classes: unchanged.
    ("bat", "bat"), ("empty", "empty"), ("human", "human"), ("virginia_opossum", "virginia_opossum"),
])
def test_paper_name(canonical, paper):
    assert paper_name(canonical) == paper


def test_coco_and_csv_names_of_the_sample_agree(shared_data):
    """Every camelCase CSV name of the S9 sample maps onto a COCO category name."""
    import json

    import pandas as pd

    sample = shared_data / "serengeti_s9_sample"
    csv_names = set(pd.read_csv(sample / "SnapshotSerengeti_v2_1_annotations.csv")["question__species"])
    text = (sample / "SnapshotSerengeti_S9_sample.json").read_text().replace("NaN", "null")
    coco_names = {c["name"] for c in json.loads(text)["categories"]}
    assert {canonical_species(n) for n in csv_names} == {canonical_species(n) for n in coco_names}
    assert {canonical_species(n) for n in coco_names} == coco_names
