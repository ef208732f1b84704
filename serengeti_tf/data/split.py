"""Train/val/test split of the kept manifest rows: grouped, stratified per species, seeded.

`group_by='capture'`: all frames of a capture land in one split. Each capture belongs to the
stratum of its species (the most frequent kept species among its images; ties alphabetical), and
each species' captures are shuffled with a generator seeded by (seed, species) and cut by
`split_fractions` (largest-remainder rounding). The result depends only on the data and the seed,
not on row order.

Species with few captures (rule, with a warning whenever a split with a positive fraction is left
empty): 1 capture -> train; 2 -> train + test (test before val: evaluation needs it; val if the test
fraction is 0); 3 or more -> every split with a positive fraction gets at least one capture, taken
from the largest split.

`group_by='site'`: whole sites go to one split (a cross-site test). Sites are shuffled by the seed;
the first sites go to train, test, val (so each split gets one), then each next site goes to the
split furthest below its share of images. Species absent from val or test are warned about.

Both are registered in `choices.SPLIT_GROUPINGS` (`data.group_by`): `(kept rows, fractions, seed)
-> (split of each kept row, warnings)`; `assign_splits` looks the grouping up.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from serengeti_tf.choices import SPLIT_GROUPINGS
from serengeti_tf.errors import UserError

SPLITS: tuple[str, ...] = ("train", "val", "test")
# Which split receives scarce captures first (train, then test, then val).
_PRIORITY: tuple[int, ...] = (0, 2, 1)


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode("utf-8"))])


def split_counts(n: int, fractions: list[float]) -> tuple[list[int], bool]:
    """Captures per split for `n` captures of one species; also whether the few-captures rule applied."""
    positive = [i for i in _PRIORITY if fractions[i] > 0]
    if n < len(positive):
        counts = [0, 0, 0]
        for i in positive[:n]:
            counts[i] = 1
        return counts, True
    exact = [n * f for f in fractions]
    counts = [int(np.floor(x)) for x in exact]
    # Largest remainder; ties follow the priority order.
    for i in sorted(_PRIORITY, key=lambda i: -(exact[i] - counts[i]))[: n - sum(counts)]:
        counts[i] += 1
    for i in positive:
        if counts[i] == 0:
            counts[i] = 1
            counts[int(np.argmax(counts))] -= 1
    return counts, False


def capture_strata(kept: pd.DataFrame) -> pd.Series:
    """capture_id -> its species (most frequent among its kept images; ties alphabetical)."""
    sizes = kept.groupby(["capture_id", "species"]).size().rename("n").reset_index()
    sizes = sizes.sort_values(["capture_id", "n", "species"], ascending=[True, False, True])
    return sizes.drop_duplicates("capture_id").set_index("capture_id")["species"]


def _split_captures(kept: pd.DataFrame, fractions: list[float], seed: int) -> tuple[dict[str, str], list[str]]:
    strata = capture_strata(kept)
    assignment: dict[str, str] = {}
    warnings: list[str] = []
    for species, captures in strata.groupby(strata, sort=True):
        ids = sorted(captures.index)
        order = _rng(seed, species).permutation(len(ids))
        counts, scarce = split_counts(len(ids), fractions)
        labels = np.repeat(np.array(SPLITS), counts)
        for position, label in zip(order, labels):
            assignment[ids[position]] = str(label)
        if scarce:
            placed = ", ".join(f"{s}={c}" for s, c in zip(SPLITS, counts))
            warnings.append(f"species '{species}' has only {len(ids)} capture(s), too few for three splits: "
                            f"{placed} (rule: 1 -> train, 2 -> train + test, 3+ -> one per split at least)")
    return assignment, warnings


def _split_sites(kept: pd.DataFrame, fractions: list[float], seed: int) -> tuple[dict[str, str], list[str]]:
    if (kept["site"] == "").any():
        raise UserError(f"data.group_by 'site' needs a site for every kept image; "
                        f"{int((kept['site'] == '').sum())} kept images have none (use group_by 'capture')")
    sizes = kept.groupby("site").size()
    sites = sorted(sizes.index)
    order = [sites[i] for i in _rng(seed, "sites").permutation(len(sites))]
    total = float(sizes.sum())
    filled = [0.0, 0.0, 0.0]
    positive = [i for i in _PRIORITY if fractions[i] > 0]
    assignment: dict[str, str] = {}
    warnings: list[str] = []
    for rank, site in enumerate(order):
        if rank < len(positive):
            target = positive[rank]
        else:
            target = max(positive, key=lambda i: (fractions[i] * total - filled[i]) / (fractions[i] * total))
        assignment[site] = SPLITS[target]
        filled[target] += sizes[site]
    if len(sites) < len(positive):
        warnings.append(f"only {len(sites)} site(s), too few for {len(positive)} splits: "
                        f"{', '.join(SPLITS[i] for i in positive[len(sites):])} left empty")
    split_of_row = kept["site"].map(assignment)
    for name in ("val", "test"):
        if fractions[SPLITS.index(name)] > 0:
            absent = sorted(set(kept["species"]) - set(kept.loc[split_of_row == name, "species"]))
            if absent:
                warnings.append(f"site split: {len(absent)} species have no {name} images "
                                f"({', '.join(absent[:10])}{', ...' if len(absent) > 10 else ''})")
    return assignment, warnings


def assign_splits(manifest: pd.DataFrame, data) -> tuple[pd.DataFrame, list[str]]:
    """Fills `split` for the kept rows (`drop_reason == ''`); dropped rows get ``.

    `data` is a `config.DataConfig` (split_fractions, group_by, seed). Returns the new manifest and
    human-readable warnings (species or sites too few for three splits).
    """
    if data.group_by not in SPLIT_GROUPINGS:
        raise UserError(f"data.group_by must be {SPLIT_GROUPINGS.one_of()}, got {data.group_by!r}")
    fractions = [float(f) for f in data.split_fractions]
    manifest = manifest.copy()
    manifest["split"] = ""
    kept_mask = manifest["drop_reason"] == ""
    kept = manifest.loc[kept_mask]
    if kept.empty:
        return manifest, ["no kept images to split"]
    splits, warnings = SPLIT_GROUPINGS.lookup(data.group_by)(kept, fractions, data.seed)
    manifest.loc[kept_mask, "split"] = splits
    return manifest, warnings


@SPLIT_GROUPINGS.register("capture", help="all frames of a capture share a split, stratified by species")
def split_by_capture(kept: pd.DataFrame, fractions: list[float], seed: int) -> tuple[pd.Series, list[str]]:
    assignment, warnings = _split_captures(kept, fractions, seed)
    return kept["capture_id"].map(assignment), warnings


@SPLIT_GROUPINGS.register("site", help="whole sites share a split (a cross-site test)")
def split_by_site(kept: pd.DataFrame, fractions: list[float], seed: int) -> tuple[pd.Series, list[str]]:
    assignment, warnings = _split_sites(kept, fractions, seed)
    return kept["site"].map(assignment), warnings


def split_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per split capture: capture_id, species (its stratum), site, split; sorted by capture_id."""
    kept = manifest[(manifest["drop_reason"] == "") & (manifest["split"] != "")]
    if kept.empty:
        return pd.DataFrame(columns=["capture_id", "species", "site", "split"])
    strata = capture_strata(kept)
    first = kept.sort_values(["capture_id", "path"]).drop_duplicates("capture_id").set_index("capture_id")
    table = pd.DataFrame({"capture_id": strata.index, "species": strata.to_numpy(),
                          "site": first.loc[strata.index, "site"].to_numpy(),
                          "split": first.loc[strata.index, "split"].to_numpy()})
    return table.sort_values("capture_id").reset_index(drop=True)
