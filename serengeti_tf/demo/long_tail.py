"""The demo's own data design: K clearly different species on a long tail, and the paper's count
rules placed on it.

The paper's 52 classes scaled to a CPU budget leave most species with 1-3 training and 0-1 test
images, so no model can learn or be scored on them (issue 21). The demo instead draws K species
(`DEMO_SPECIES`, picked once for looking different from each other: colour, pattern, silhouette),
one image per capture, with images per species falling geometrically from the most frequent to the
rarest, and a test split large enough that the rarest has `MIN_TEST_IMAGES`:

- the rarest species has `smallest` images: `SPLIT_FRACTIONS` puts `MIN_TEST_IMAGES` of them in
  test and 10 in train;
- the most frequent has enough that its train count is >= `IMBALANCE` x the rarest's (the paper's
  tail: its largest/smallest train ratio is 48,377; 50 is what a CPU demo can hold with 5 test
  images for the rarest).

The paper's count rules (ROS thresholds and cap, RUS cap, head/tail groups) are absolute counts for
classes of 1-48,377 training images. `paper_rules_on_long_tail` places each at the same relative
position on a log scale between the smallest and largest class, which keeps the paper's shape
(tail < 500 is the rarer ~58% of the log range, head >= 5000 the top ~21%). These choices were
written down before any comparison was run; nothing here is tuned to make a method win.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from serengeti_tf.data.split import split_counts
from serengeti_tf.errors import UserError
from serengeti_tf.species import PAPER_TRAIN_COUNTS

# Species the demo draws, most frequent first (their order in the paper's Table 4), picked for
# looking unlike each other in daylight and in infrared: zebra (black/white stripes), Thomson's
# gazelle (tan, black side band), elephant (big, grey, ears), buffalo (black, horns), giraffe
# (orange, dark patches, long neck), guinea fowl (dark bird, white dots), ostrich (black/white bird,
# long legs), cheetah (yellow, spotted, long body), honey badger (black, white saddle) and secretary
# bird (grey bird, dark lower body, long legs).
DEMO_SPECIES: tuple[str, ...] = ("zebra", "gazelleThomsons", "elephant", "buffalo", "giraffe", "guineaFowl",
                                 "ostrich", "cheetah", "secretaryBird", "honeyBadger")
SPLIT_FRACTIONS: tuple[float, float, float] = (0.6, 0.1, 0.3)
MIN_TEST_IMAGES = 5
IMBALANCE = 50
# 17 images split (0.6, 0.1, 0.3) by largest remainder: 10 train, 2 val, 5 test.
SMALLEST_IMAGES = 17


@dataclass(frozen=True)
class LongTail:
    """K species from `DEMO_SPECIES`, images per species geometric from `largest` down to `smallest`."""

    species: int
    largest: int
    smallest: int = SMALLEST_IMAGES

    def names(self) -> tuple[str, ...]:
        return DEMO_SPECIES[:self.species]

    def image_counts(self) -> dict[str, int]:
        """Images (one per capture) per species, most frequent first."""
        check_long_tail(self)
        k = self.species
        ratio = self.smallest / self.largest
        return {name: int(round(self.largest * ratio ** (i / (k - 1)))) for i, name in enumerate(self.names())}

    def split_counts(self) -> dict[str, tuple[int, int, int]]:
        """(train, val, test) images per species: `prepare`'s split of one-image captures (exact)."""
        return {name: tuple(split_counts(n, list(SPLIT_FRACTIONS))[0]) for name, n in self.image_counts().items()}

    def train_counts(self) -> dict[str, int]:
        return {name: parts[0] for name, parts in self.split_counts().items()}

    def imbalance(self) -> float:
        """Largest over smallest train count."""
        train = self.train_counts().values()
        return max(train) / min(train)


def check_long_tail(design: LongTail) -> None:
    if not 2 <= design.species <= len(DEMO_SPECIES):
        raise UserError(f"demo: the long tail needs 2-{len(DEMO_SPECIES)} species, got {design.species}")
    if not 1 <= design.smallest < design.largest:
        raise UserError(f"demo: the long tail needs 1 <= smallest < largest images, got {design.smallest} "
                        f"and {design.largest}")


def log_position(count: float, smallest: float, largest: float) -> float:
    """Where `count` sits between `smallest` (0) and `largest` (1) on a log scale."""
    return math.log(count / smallest) / math.log(largest / smallest)


def paper_rules_on_long_tail(train_counts: Sequence[int]) -> dict:
    """The paper's count rules (ROS thresholds/cap, RUS cap, head/tail groups) moved to these train
    counts: each rule keeps its relative log-scale position between the paper's smallest (1) and
    largest (48,377) class. A config update (sampler, eval)."""
    paper_low, paper_high = min(PAPER_TRAIN_COUNTS), max(PAPER_TRAIN_COUNTS)
    low, high = min(train_counts), max(train_counts)
    if not 1 <= low < high:
        raise UserError(f"demo: paper rules need train counts with 1 <= smallest < largest, got {low} and {high}")

    def moved(value: int) -> int:
        return int(round(low * (high / low) ** log_position(value, paper_low, paper_high)))

    thresholds: list[int] = []
    for value in (100, 500, 1000, 5000):  # every ROS band keeps at least one count
        thresholds.append(max(moved(value), (thresholds[-1] if thresholds else 1) + 1))
    return {"sampler": {"ros_thresholds": thresholds, "ros_cap": moved(5000), "rus_cap": moved(15000)},
            "eval": {"head_min": moved(5000), "tail_max": moved(500)}}
