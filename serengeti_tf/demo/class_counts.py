"""Images per class (the paper's Table 4 training counts, scaled) and the paper's count rules scaled alike.

Each of the paper's 52 classes gets `round(train_count * scale)` images, where `train_count` is the
class's Table 4 training count (`species.PAPER_TRAIN_COUNTS`), and never fewer than
`min_captures_per_class` captures. The default scale 0.015 gives 2,342 labelled images (wildebeest
726 ... about 20 classes with a single one-frame capture) plus about 50 blank/human/two-species
images, 2,396 in all; `prepare` then splits them 80/10/10 by capture, so a demo's train split holds
about 0.8 * scale * Table 4 (a class with one capture lands in train only).
"""

from __future__ import annotations

import math

from serengeti_tf.errors import UserError
from serengeti_tf.species import PAPER_SPECIES, PAPER_TRAIN_COUNTS

DEFAULT_SCALE = 0.015
DEFAULT_MIN_CAPTURES = 1


def check_scale(scale: float) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise UserError(f"demo-data: scale must be a number in (0, 1], got {scale!r}")


# Bounds --min-captures: 1,000 captures for each of 52 classes is already ~150,000 drawn images.
MAX_MIN_CAPTURES = 1000


def check_min_captures(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MIN_CAPTURES:
        raise UserError(f"demo-data: min_captures_per_class must be an int in [1, {MAX_MIN_CAPTURES}], got {value!r}")


def paper_train_counts() -> dict[str, int]:
    """Table 4's training images per class (LILA camelCase names, most frequent first)."""
    return dict(zip(PAPER_SPECIES, PAPER_TRAIN_COUNTS))


def class_image_counts(scale: float = DEFAULT_SCALE,
                       min_captures_per_class: int = DEFAULT_MIN_CAPTURES) -> dict[str, int]:
    """Images per class: Table 4 train count times `scale`, never fewer than the minimum captures."""
    check_scale(scale)
    check_min_captures(min_captures_per_class)
    return {name: max(int(round(count * scale)), min_captures_per_class)
            for name, count in paper_train_counts().items()}


def scaled_paper_rules(scale: float = DEFAULT_SCALE, train_fraction: float = 0.8) -> dict:
    """The paper's count thresholds shrunk like the data: a config update for the demo dataset.

    The paper's ROS thresholds/cap, RUS cap and the head/tail class groups are absolute image counts
    for 155k training images; on data scaled by `scale` (and split `train_fraction` to train) they
    must shrink by the same factor or RUS would never bite and ROS would oversample every class.
    This applies the paper's rules proportionally; it is not tuned for any outcome. Values are
    rounded UP: a threshold `n < t` must keep a non-empty band (100 x 0.012 = 1.2 rounded to 1 would
    make ROS's x10 band `n < 1` dead; `ceil` gives 2, so single-image classes get x10 as in the paper).
    At smaller scales ceil alone is not enough (100 x 0.0048 -> 1), so every ROS band keeps at least
    one count: the lowest threshold is at least 2 and each is above the one before.
    """
    check_scale(scale)
    factor = scale * train_fraction

    def shrink(value: int) -> int:
        # round(.., 9) first: 500 * 0.012 is 6.000000000000001 in floating point, which is 6, not 7.
        return max(1, math.ceil(round(value * factor, 9)))

    thresholds: list[int] = []
    for value in (100, 500, 1000, 5000):
        thresholds.append(max(shrink(value), (thresholds[-1] if thresholds else 1) + 1))
    return {"sampler": {"ros_thresholds": thresholds,
                        "ros_cap": shrink(5000), "rus_cap": shrink(15000)},
            "eval": {"head_min": shrink(5000), "tail_max": shrink(500)}}
