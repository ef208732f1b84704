"""Which captures the demo has, where and when: a pure function of scale, seed and the minimum captures.

Captures have 1-3 frames. On top of the 52 classes' captures come a few blank and human captures
and one zebra + wildebeest capture so `prepare`'s filters have work. Each capture gets a camera
site, a start time in the season (captures between 19:00 and 06:00 are night frames; nocturnal
species are photographed at night more often, 70% vs 15%, as in the real data), a roll and its
IMAG numbers, as in LILA's layout.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Optional

import numpy as np
import pandas as pd

from serengeti_tf.demo.class_counts import DEFAULT_MIN_CAPTURES, DEFAULT_SCALE, class_image_counts
from serengeti_tf.demo.long_tail import LongTail
from serengeti_tf.demo.prototypes import PROTOTYPES, Prototype

SEASON = "SER_S9"
SITES = ("B03", "C05", "D07", "E02", "F11", "H08", "J06", "L10")
# Real cameras number frames with four digits per roll; more images than this open a new roll.
MAX_IMAGES_PER_ROLL = 9000
SEASON_START = datetime(2014, 1, 1)
SEASON_DAYS = 180
NIGHT_SHARE = {"diurnal": 0.15, "nocturnal": 0.70}


def frames_per_capture(n_images: int, min_captures: int, rng: np.random.Generator) -> list[int]:
    """Splits `n_images` into captures of 1-3 frames (about 2.4 on average), at least `min_captures`."""
    low = max(min_captures, math.ceil(n_images / 3))
    n_captures = int(np.clip(round(n_images / 2.4), low, n_images))
    # Each capture has two optional frame slots; the extra frames fill distinct random slots.
    slots = rng.choice(2 * n_captures, size=n_images - n_captures, replace=False)
    frames = 1 + np.bincount(slots // 2, minlength=n_captures)
    return frames.tolist()


def plan_captures(scale: float = DEFAULT_SCALE, seed: int = 0,
                  min_captures_per_class: int = DEFAULT_MIN_CAPTURES,
                  long_tail: Optional[LongTail] = None) -> pd.DataFrame:
    """One row per capture: species (list), frames, count, site, roll, capture number, start time,
    and `closeup` (how render.py frames the animals).

    Rows are ordered by site, roll and capture number; `first_image` is the roll-wide IMAG number
    of the capture's first frame. With `long_tail` (the `demo` command's design, long_tail.py) the
    species and their image counts come from it instead of `scale`, and every capture is one
    close-up frame of one animal, so each image is an independent draw.
    """
    rng = np.random.default_rng([seed, 0])
    rows = []
    if long_tail is not None:
        for name, n_images in long_tail.image_counts().items():
            share = NIGHT_SHARE["nocturnal" if PROTOTYPES[name].nocturnal else "diurnal"]
            rows.extend(dict(species=[name], frames=1, count=1, night_share=share) for _ in range(n_images))
    else:
        for name, n_images in class_image_counts(scale, min_captures_per_class).items():
            proto = PROTOTYPES[name]
            for frames in frames_per_capture(n_images, min_captures_per_class, rng):
                rows.append(dict(species=[name], frames=frames, count=_draw_count(proto, rng),
                                 night_share=NIGHT_SHARE["nocturnal" if proto.nocturnal else "diurnal"]))
    n_labelled = len(rows)
    # A few captures for prepare's filters: blanks, humans and one two-species capture.
    for _ in range(max(3, round(0.02 * n_labelled))):
        rows.append(dict(species=["blank"], frames=int(rng.integers(1, 4)), count=0, night_share=0.5))
    for _ in range(max(2, round(0.005 * n_labelled))):
        rows.append(dict(species=["human"], frames=int(rng.integers(1, 4)), count=1, night_share=0.05))
    rows.append(dict(species=["zebra", "wildebeest"], frames=3, count=2, night_share=0.15))

    plan = pd.DataFrame(rows)
    plan["closeup"] = long_tail is not None
    plan["site"] = rng.choice(np.array(SITES), size=len(plan))
    offsets = [_draw_time_offset(share, rng) for share in plan["night_share"]]
    plan["start"] = [SEASON_START + timedelta(seconds=int(s)) for s in offsets]
    plan = plan.drop(columns="night_share")
    # Ties in time are broken by the row's creation order so the plan is a pure function of the seed.
    plan["order"] = np.arange(len(plan))
    plan = plan.sort_values(["site", "start", "order"], kind="stable").reset_index(drop=True)
    plan = _assign_rolls(plan, rng)
    plan["subject_id"] = 20000000 + np.arange(len(plan))
    return plan.drop(columns="order")


def _draw_count(proto: Prototype, rng: np.random.Generator) -> int:
    if proto.herd:
        return int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    return int(rng.choice([1, 2], p=[0.9, 0.1]))


def _draw_time_offset(night_share: float, rng: np.random.Generator) -> int:
    """Seconds after the season start: a random day, night (19:00-06:00) with probability `night_share`."""
    day = int(rng.integers(0, SEASON_DAYS))
    if rng.random() < night_share:
        seconds = int(rng.integers(19 * 3600, 30 * 3600)) % 86400
    else:
        seconds = int(rng.integers(6 * 3600, 19 * 3600))
    return day * 86400 + seconds


def _assign_rolls(plan: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Splits each site's chronological captures into 1-3 rolls (more if a roll would overflow)."""
    rolls, captures, first_images = [], [], []
    for site in SITES:
        frames = plan.loc[plan["site"] == site, "frames"].to_numpy()
        if len(frames) == 0:
            continue
        n_rolls = max(int(rng.integers(1, 4)), math.ceil(frames.sum() / MAX_IMAGES_PER_ROLL))
        n_rolls = min(n_rolls, len(frames))
        # Roll boundaries at equal shares of the site's captures (a card swap every few weeks).
        roll_of = np.minimum((np.arange(len(frames)) * n_rolls) // len(frames), n_rolls - 1) + 1
        for roll in range(1, n_rolls + 1):
            in_roll = frames[roll_of == roll]
            rolls.extend([roll] * len(in_roll))
            captures.extend(range(1, len(in_roll) + 1))
            first_images.extend((np.cumsum(in_roll) - in_roll + 1).tolist())
    plan = plan.copy()
    plan["roll"] = rolls
    plan["capture"] = captures
    plan["first_image"] = first_images
    return plan


def capture_id(site: str, roll: int, capture: int) -> str:
    return f"{SEASON}#{site}#{roll}#{capture}"


def image_path(site: str, roll: int, number: int) -> str:
    """LILA's relative path: `S9/<site>/<site>_R<roll>/S9_<site>_R<roll>_IMAG<nnnn>.JPG`."""
    return f"S9/{site}/{site}_R{roll}/S9_{site}_R{roll}_IMAG{number:04d}.JPG"


def frame_rows(plan: pd.DataFrame) -> list[dict]:
    """One dict per image: capture id, rank, relative path, datetime (frames one second apart)."""
    rows = []
    for cap in plan.itertuples(index=False):
        cid = capture_id(cap.site, cap.roll, cap.capture)
        for rank in range(1, cap.frames + 1):
            rows.append(dict(capture_id=cid, rank=rank, frames=cap.frames, site=cap.site,
                             path=image_path(cap.site, cap.roll, cap.first_image + rank - 1),
                             datetime=cap.start + timedelta(seconds=rank - 1)))
    return rows
