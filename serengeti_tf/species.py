"""Canonical species names (LILA COCO lowercase) and the paper's camelCase display names.

One canonical form is used everywhere after the readers: the lowercase names of LILA's COCO Camera
Traps file (`gazellethomsons`, `otherbird`, `monkeyvervet`, `empty`, `human`). The CSV's camelCase
names lowercase to it; a few LILA spellings differ between the two schemas and are aliased. Names
from other datasets (`Virginia Opossum`) become lowercase with `_` for inner whitespace.

Scientific names (`scientific_names`, `taxa`): the shipped table `scientific_names.csv` gives each
Snapshot Serengeti label its scientific name, the rank of that taxon (a group label such as
`otherbird` or `mongoose` gets the higher taxon it covers: class Aves, family Herpestidae) and,
for `lionfemale` / `lionmale`, the sex. A user's CSV (`label,scientificName`, optional `taxonRank`)
adds labels or replaces shipped ones; an empty scientificName means "no scientific name".
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Optional

# The paper's 52 species (Table 4, s9_class_counts.csv order: most to least frequent in train).
PAPER_SPECIES: tuple[str, ...] = (
    "wildebeest", "zebra", "gazelleThomsons", "elephant", "buffalo", "warthog", "giraffe",
    "gazelleGrants", "impala", "otherBird", "hartebeest", "hyenaSpotted", "guineaFowl", "lionFemale",
    "topi", "baboon", "secretaryBird", "eland", "hippopotamus", "dikDik", "ostrich", "cheetah",
    "reedbuck", "koriBustard", "insectSpider", "jackal", "lionMale", "serval", "hare", "mongoose",
    "vervetMonkey", "porcupine", "batEaredFox", "aardvark", "waterbuck", "aardwolf", "leopard",
    "bushbuck", "vulture", "duiker", "hyenaStriped", "cattle", "reptiles", "rhinoceros", "steenbok",
    "honeyBadger", "caracal", "civet", "wildcat", "genet", "zorilla", "rodents",
)

# Training images per species in the paper's split (Table 4 / s9_class_counts.csv `train`, PAPER_SPECIES
# order; 155,254 images). The synthetic demo draws each class in proportion to it.
PAPER_TRAIN_COUNTS: tuple[int, ...] = (
    48377, 36480, 30368, 4761, 3920, 3730, 3145, 2857, 2746, 2380, 2368, 2119, 1516, 1207, 1204, 1003,
    735, 723, 608, 590, 478, 470, 462, 435, 385, 383, 294, 242, 220, 168, 120, 118, 96, 88, 78, 73, 48,
    34, 32, 29, 29, 27, 17, 15, 15, 14, 14, 11, 8, 8, 5, 1,
)

# Test images per species in the paper's split (Table 4 / s9_class_counts.csv `test`, PAPER_SPECIES
# order; 19,377 images, nine species with one image). Used to simulate the paper's test split when
# checking bootstrap coverage.
PAPER_TEST_COUNTS: tuple[int, ...] = (
    6047, 4560, 3795, 594, 490, 466, 392, 357, 343, 297, 295, 264, 189, 150, 150, 125, 90, 90, 76, 73,
    59, 58, 57, 54, 47, 47, 36, 30, 27, 21, 12, 14, 11, 10, 9, 9, 5, 4, 4, 3, 3, 3, 2, 1, 1, 1, 1, 1,
    1, 1, 1, 1,
)

EMPTY = "empty"
HUMAN = "human"

# Spellings that differ between LILA's CSV and COCO schemas (keys: lowercase, separators removed).
_ALIASES: dict[str, str] = {
    "blank": EMPTY,
    "vervetmonkey": "monkeyvervet",
    "birdother": "otherbird",
}

# Canonical names whose paper name is not simply the lowercase of it.
_PAPER_OVERRIDES: dict[str, str] = {"monkeyvervet": "vervetMonkey"}

_SEPARATORS = re.compile(r"[\s_\-]+")


def _squash(name: str) -> str:
    return _SEPARATORS.sub("", name.strip().lower())


def _paper_by_canonical() -> dict[str, str]:
    table = {_squash(n): n for n in PAPER_SPECIES}
    for canonical, paper in _PAPER_OVERRIDES.items():
        table.pop(_squash(paper), None)
        table[canonical] = paper
    return table


_PAPER_BY_CANONICAL = _paper_by_canonical()
# Every name known to be a Snapshot Serengeti label (so `Gazelle Thomsons` still maps to it).
_SERENGETI = frozenset(_PAPER_BY_CANONICAL) | {EMPTY, HUMAN, "bat"}


def canonical_species(name: str) -> str:
    """Returns the one canonical (LILA COCO lowercase) form of a species label.

    `gazelleThomsons` -> `gazellethomsons`, `blank` -> `empty`, `vervetMonkey` -> `monkeyvervet`,
    `birdother` -> `otherbird`; other names are lowercased with inner whitespace as `_`
    (`Virginia Opossum` -> `virginia_opossum`). Surrounding whitespace is ignored.
    """
    if not isinstance(name, str):
        raise TypeError(f"species name must be a str, got {name!r} ({type(name).__name__})")
    squashed = _squash(name)
    if squashed in _ALIASES:
        return _ALIASES[squashed]
    if squashed in _SERENGETI:
        return squashed
    return re.sub(r"\s+", "_", name.strip().lower())


def paper_name(canonical: str) -> str:
    """The paper's camelCase name for a canonical species (`monkeyvervet` -> `vervetMonkey`).

    Names outside the paper's 52 classes are returned unchanged.
    """
    return _PAPER_BY_CANONICAL.get(canonical, canonical)


# ---- scientific names ---------------------------------------------------------------------------

SCIENTIFIC_NAMES_FILE = "scientific_names.csv"


@dataclass(frozen=True)
class Taxon:
    """What a class label stands for in biodiversity standards (Camtrap DP, MD descriptions)."""

    scientific_name: str
    rank: str = ""  # species, genus, family, ... ("" when the user's table does not say)
    vernacular_name: str = ""
    sex: str = ""  # "female" / "male" where the label itself says it (lionfemale, lionmale)


def _rows(lines: Iterable[str], source: str) -> list[dict[str, str]]:
    reader = csv.DictReader(lines)
    columns = {c.strip() for c in (reader.fieldnames or [])}
    if not {"label", "scientificName"} <= columns:
        from serengeti_tf.errors import UserError

        raise UserError(f"{source}: a scientific-names CSV needs the columns label,scientificName; "
                        f"got {sorted(columns) or 'no header'}")
    return [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def _table(rows: list[dict[str, str]]) -> dict[str, Optional[Taxon]]:
    table: dict[str, Optional[Taxon]] = {}
    for row in rows:
        if not row.get("label"):
            continue
        name = row.get("scientificName", "")
        table[canonical_species(row["label"])] = Taxon(name, row.get("taxonRank", ""), row.get("vernacularName", ""),
                                                       row.get("sex", "")) if name else None
    return table


def shipped_taxa() -> dict[str, Optional[Taxon]]:
    """The shipped table: canonical label -> Taxon (None for `empty`, which is no animal)."""
    text = resources.files("serengeti_tf").joinpath(SCIENTIFIC_NAMES_FILE).read_text(encoding="utf-8")
    return _table(_rows(text.splitlines(), SCIENTIFIC_NAMES_FILE))


def read_taxa(path: str | Path) -> dict[str, Optional[Taxon]]:
    """A user's CSV with columns label,scientificName (optional taxonRank, vernacularName, sex)."""
    from serengeti_tf.errors import UserError, setting

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return _table(_rows(f, str(path)))
    except FileNotFoundError:
        raise UserError(f"scientific-names file not found ({setting('scientific_names')}): {path}") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"scientific-names file {path} is not a readable CSV: {err}") from None


def taxa(class_names: Iterable[str], user_mapping_path: str | Path | None = None) -> dict[str, Optional[Taxon]]:
    """Each class name -> its Taxon (user's table first, then the shipped one), None when unknown."""
    table = shipped_taxa()
    if user_mapping_path:
        table.update(read_taxa(user_mapping_path))
    return {name: table.get(canonical_species(name)) for name in class_names}


def scientific_names(class_names: Iterable[str],
                     user_mapping_path: str | Path | None = None) -> dict[str, Optional[str]]:
    """Each class name -> its scientific name, or None (no name known, or `empty`).

    `scientific_names(["zebra", "otherbird", "empty"])` ->
    `{"zebra": "Equus quagga", "otherbird": "Aves", "empty": None}`. Labels are matched in their
    canonical form (`gazelleThomsons` finds `gazellethomsons`); `user_mapping_path` is a CSV
    `label,scientificName` whose rows win over the shipped table.
    """
    return {name: (taxon.scientific_name if taxon else None)
            for name, taxon in taxa(class_names, user_mapping_path).items()}
