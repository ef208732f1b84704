"""Writes a SYNTHETIC Snapshot Serengeti-style dataset for demos, smoke runs and tests.

Nothing here is real camera-trap data. The output mirrors the LILA Snapshot Serengeti download
exactly, so every reader and filter is exercised as on a real download:

    OUT/
      README.txt                               says the data is synthetic and how it was made
      S9/<site>/<site>_R<roll>/S9_<site>_R<roll>_IMAG<nnnn>.JPG
      SnapshotSerengeti_v2_1_images.csv        unnamed index, capture_id, image_rank_in_capture,
                                               image_path_rel
      SnapshotSerengeti_v2_1_annotations.csv   unnamed index, capture_id, season, site, roll, capture,
                                               capture_date_local, capture_time_local, subject_id,
                                               question__species (camelCase), question__count_max, ...
      SnapshotSerengeti_S9_demo.json           COCO Camera Traps: images, sequence-level annotations
                                               copied to each frame, categories (lowercase, empty=0,
                                               human=1); `info.synthetic` is true
      demo_summary.json, config.yaml, fingerprint.json

**Class counts.** Each of the paper's 52 classes gets `round(train_count * scale)` images, where
`train_count` is the class's Table 4 training count (embedded below), and never fewer than
`min_captures_per_class` captures. The default scale 0.015 gives 2,342 labelled images (wildebeest
726 ... about 20 classes with a single one-frame capture) plus about 50 blank/human/two-species
images, 2,396 in all; `prepare` then splits them 80/10/10 by capture, so a demo's train split holds
about 0.8 * scale * Table 4 (a class with one capture lands in train only). Captures have 1-3 frames. On top come a
few blank and human captures and one zebra + wildebeest capture so `prepare`'s filters have work.

**Images** (default 128x96 px JPEG). A capture is drawn on its camera site's fixed background: sky
gradient, horizon, grass texture and 0-3 acacia trees, all chosen per site; greenness follows the
date (wet vs dry season) and brightness the time of day. Each class has a hand-written prototype: body
shape (size, aspect, leg length, neck, posture), body colour, a texture (stripes, spots, band,
saddle, two-tone belly, dots, ...) and sometimes a mark (mane, horns, white rump, big ears, tusks,
dark face). Per image the generator varies position, distance (size), facing, number of individuals
(herd species draw 1-3), colour and brightness, texture phase and sensor noise; frames of a capture
share everything except a small movement and the noise, as in a real burst. Captures between 19:00
and 06:00 become night infrared frames: greyscale luminance with a slight IR tint, a flash fall-off
towards the edges, a dark sky, more noise and eye-shine; colour cues are lost at night. Nocturnal
species are photographed at night more often (70% vs 15%), as in the real data.

Look-alike groups share body shape and colour and differ by one small cue, on purpose, like the real
lionMale/lionFemale and gazelle pairs: lionFemale/lionMale (mane)/caracal; gazelleThomsons (side
band)/gazelleGrants (white rump)/impala/reedbuck; dikDik/steenbok/duiker; hartebeest/topi (dark
shoulder patch); wildebeest/waterbuck (white rump); cheetah/leopard/serval (spot size, body size);
hyenaSpotted/hyenaStriped/aardwolf; jackal/batEaredFox (ears); genet/civet; honeyBadger/zorilla;
koriBustard/secretaryBird; vulture/otherBird; elephant/rhinoceros/hippopotamus; baboon/vervetMonkey;
hare/rodents/mongoose. A rare class whose look-alike is frequent is then mostly confused with it, and
a CNN needs many examples to learn the small cue; that is the imbalance problem the paper studies.

**Honesty.** The prototypes were written once to look plausible; they were not tuned to make any
sampler or training method win. How hard the data is follows from the drawing rules above only.
Output is deterministic: the same arguments give byte-identical files on the same software stack
(per-capture random streams seeded from `seed`; JPEG encoding with fixed settings); only
`config.yaml` holds the output folder's absolute path.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from PIL import Image

from serengeti_tf import __version__
from serengeti_tf import config as cfg
from serengeti_tf.data.detections import write_md_file
from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import atomic_path, claim_output_dir, write_bytes, write_json, write_text
from serengeti_tf.locks import output_lock

GENERATOR_VERSION = 1
DEFAULT_SCALE = 0.015
DEFAULT_IMAGE_SIZE = (128, 96)
DEFAULT_MIN_CAPTURES = 1
SEASON = "SER_S9"
SITES = ("B03", "C05", "D07", "E02", "F11", "H08", "J06", "L10")
IMAGES_CSV = "SnapshotSerengeti_v2_1_images.csv"
ANNOTATIONS_CSV = "SnapshotSerengeti_v2_1_annotations.csv"
COCO_JSON = "SnapshotSerengeti_S9_demo.json"
SUMMARY_JSON = "demo_summary.json"
MD_JSON = "md_detections.json"  # MegaDetector-format boxes around the drawn animals (crop path)
MISSED_SHARE = 0.05  # boxes given a below-threshold confidence in MD_JSON
# Real cameras number frames with four digits per roll; more images than this open a new roll.
MAX_IMAGES_PER_ROLL = 9000
SEASON_START = datetime(2014, 1, 1)
SEASON_DAYS = 180
NIGHT_SHARE = {"diurnal": 0.15, "nocturnal": 0.70}

# The paper's Table 4 training counts (Snapshot Serengeti season 9, 52 classes, LILA camelCase names).
PAPER_TRAIN_COUNTS: tuple[tuple[str, int], ...] = (
    ("wildebeest", 48377), ("zebra", 36480), ("gazelleThomsons", 30368), ("elephant", 4761),
    ("buffalo", 3920), ("warthog", 3730), ("giraffe", 3145), ("gazelleGrants", 2857),
    ("impala", 2746), ("otherBird", 2380), ("hartebeest", 2368), ("hyenaSpotted", 2119),
    ("guineaFowl", 1516), ("lionFemale", 1207), ("topi", 1204), ("baboon", 1003),
    ("secretaryBird", 735), ("eland", 723), ("hippopotamus", 608), ("dikDik", 590),
    ("ostrich", 478), ("cheetah", 470), ("reedbuck", 462), ("koriBustard", 435),
    ("insectSpider", 385), ("jackal", 383), ("lionMale", 294), ("serval", 242), ("hare", 220),
    ("mongoose", 168), ("vervetMonkey", 120), ("porcupine", 118), ("batEaredFox", 96),
    ("aardvark", 88), ("waterbuck", 78), ("aardwolf", 73), ("leopard", 48), ("bushbuck", 34),
    ("vulture", 32), ("duiker", 29), ("hyenaStriped", 29), ("cattle", 27), ("reptiles", 17),
    ("rhinoceros", 15), ("steenbok", 15), ("honeyBadger", 14), ("caracal", 14), ("civet", 11),
    ("wildcat", 8), ("genet", 8), ("zorilla", 5), ("rodents", 1),
)

# LILA's COCO file spells two classes differently from its CSV (see ../shared/data/README.md).
_COCO_RENAMES = {"blank": "empty", "vervetMonkey": "monkeyvervet"}


@dataclass(frozen=True)
class Prototype:
    """How one class is drawn. Sizes are fractions of the image height, shapes of the body height."""

    body: str            # quad | bird | upright | insect
    colour: str          # body colour, hex
    colour2: str         # texture / mark colour, hex
    pattern: str         # none | stripes | hstripes | spots | dots | band | saddle | twotone | patch
    strength: float      # texture contrast 0..1
    period: float        # texture period as a fraction of body height
    mark: str            # none | mane | horns | horn | rump | ears | tusks | face
    size: float          # body height / image height at the nearest distance
    aspect: float        # body width / body height
    legs: float          # leg length / body height
    neck: float          # head height above the body / body height
    head: float          # head size / body height
    herd: bool = False   # draws 1-3 individuals
    nocturnal: bool = False
    colour_jitter: float = 0.05


def _p(body, colour, colour2, pattern, strength, period, mark, size, aspect, legs, neck, head, **kw):
    return Prototype(body, colour, colour2, pattern, strength, period, mark, size, aspect, legs, neck, head,
                     **kw)


# One prototype per class, written to look plausible (not tuned); look-alike groups are listed in
# the module docstring.
PROTOTYPES: dict[str, Prototype] = {
    # Large bovids.
    "wildebeest": _p("quad", "#55504b", "#2c2926", "stripes", 0.35, 0.22, "none", 0.19, 1.55, 0.6, 0.25, 0.42, herd=True),
    "waterbuck": _p("quad", "#5f5650", "#efefea", "none", 0.0, 0.3, "rump", 0.19, 1.5, 0.6, 0.35, 0.4),
    "buffalo": _p("quad", "#2a2826", "#7a7064", "none", 0.0, 0.3, "horns", 0.22, 1.7, 0.45, 0.1, 0.45, herd=True),
    "hartebeest": _p("quad", "#b27b4b", "#4a2e26", "none", 0.0, 0.3, "horns", 0.18, 1.45, 0.65, 0.45, 0.38),
    "topi": _p("quad", "#9a5a3a", "#3a2a36", "patch", 0.85, 0.3, "horns", 0.18, 1.45, 0.65, 0.45, 0.38),
    "eland": _p("quad", "#c9a57a", "#ece2d0", "stripes", 0.45, 0.3, "horns", 0.24, 1.7, 0.6, 0.3, 0.4),
    "cattle": _p("quad", "#8b5a2b", "#f2efe8", "spots", 0.9, 0.9, "horns", 0.2, 1.6, 0.55, 0.2, 0.42, herd=True,
                 colour_jitter=0.12),
    # Antelopes and gazelles.
    "gazelleThomsons": _p("quad", "#c18a52", "#231b15", "band", 0.9, 0.3, "horns", 0.12, 1.4, 0.8, 0.4, 0.38, herd=True),
    "gazelleGrants": _p("quad", "#c8985f", "#f6f1e6", "none", 0.0, 0.3, "rump", 0.14, 1.4, 0.8, 0.45, 0.38, herd=True),
    "impala": _p("quad", "#b0703d", "#ecdfca", "twotone", 0.8, 0.3, "horns", 0.14, 1.4, 0.8, 0.45, 0.38, herd=True),
    "reedbuck": _p("quad", "#c2a36c", "#ece2cf", "twotone", 0.5, 0.3, "none", 0.13, 1.4, 0.75, 0.45, 0.38),
    "bushbuck": _p("quad", "#8a4a2a", "#f0e8d8", "dots", 0.9, 0.35, "none", 0.12, 1.4, 0.7, 0.4, 0.38),
    "duiker": _p("quad", "#8a7a5a", "#6a5a40", "none", 0.0, 0.3, "none", 0.09, 1.35, 0.6, 0.3, 0.4),
    "dikDik": _p("quad", "#8e8370", "#c5b9a0", "twotone", 0.4, 0.3, "none", 0.07, 1.3, 0.7, 0.35, 0.45),
    "steenbok": _p("quad", "#b3743f", "#e8dcc6", "twotone", 0.4, 0.3, "ears", 0.08, 1.3, 0.7, 0.35, 0.45),
    # Zebra, giraffe, ostrich.
    "zebra": _p("quad", "#efede6", "#161616", "stripes", 1.0, 0.18, "none", 0.19, 1.5, 0.6, 0.35, 0.4, herd=True),
    "giraffe": _p("quad", "#d09a52", "#6b3b1f", "spots", 0.9, 0.3, "none", 0.2, 1.15, 1.0, 1.3, 0.3),
    "ostrich": _p("bird", "#222222", "#e8e4dc", "twotone", 0.6, 0.3, "none", 0.15, 1.3, 1.1, 0.95, 0.25),
    # Pachyderms.
    "elephant": _p("quad", "#7d7a78", "#6a6766", "none", 0.0, 0.3, "ears", 0.3, 1.35, 0.5, 0.05, 0.55, herd=True),
    "rhinoceros": _p("quad", "#807b76", "#d8d2c8", "none", 0.0, 0.3, "horn", 0.2, 1.8, 0.35, 0.0, 0.45),
    "hippopotamus": _p("quad", "#745f66", "#b08890", "twotone", 0.4, 0.3, "none", 0.17, 2.0, 0.25, 0.0, 0.5,
                       nocturnal=True),
    # Pigs, badgers and other low animals.
    "warthog": _p("quad", "#6a5e55", "#efe8da", "none", 0.0, 0.3, "tusks", 0.11, 1.5, 0.45, 0.05, 0.45),
    "honeyBadger": _p("quad", "#1e1e1e", "#dcdcd6", "saddle", 0.95, 0.3, "none", 0.07, 2.0, 0.3, 0.0, 0.4,
                      nocturnal=True),
    "zorilla": _p("quad", "#1a1a1a", "#f0f0f0", "hstripes", 0.95, 0.35, "none", 0.05, 2.1, 0.3, 0.0, 0.4,
                  nocturnal=True),
    "porcupine": _p("quad", "#3a3632", "#d9d5cc", "stripes", 0.7, 0.12, "none", 0.09, 1.4, 0.2, 0.0, 0.35,
                    nocturnal=True),
    "aardvark": _p("quad", "#a08878", "#8a7060", "none", 0.0, 0.3, "ears", 0.12, 1.9, 0.35, 0.0, 0.45,
                   nocturnal=True),
    # Cats.
    "lionFemale": _p("quad", "#c49a5c", "#5a3a1e", "none", 0.0, 0.3, "none", 0.15, 1.8, 0.55, 0.2, 0.4),
    "lionMale": _p("quad", "#c49a5c", "#5a3a1e", "none", 0.0, 0.3, "mane", 0.16, 1.8, 0.55, 0.2, 0.4),
    "caracal": _p("quad", "#b77a4a", "#2a201a", "none", 0.0, 0.3, "ears", 0.08, 1.7, 0.55, 0.2, 0.4),
    "cheetah": _p("quad", "#d6b070", "#2a2018", "spots", 0.85, 0.18, "none", 0.13, 1.9, 0.75, 0.2, 0.35),
    "leopard": _p("quad", "#c99b55", "#3a2a18", "spots", 0.85, 0.32, "none", 0.13, 1.9, 0.5, 0.2, 0.4,
                  nocturnal=True),
    "serval": _p("quad", "#d1a860", "#2a2018", "spots", 0.85, 0.22, "ears", 0.09, 1.7, 0.7, 0.2, 0.4),
    "wildcat": _p("quad", "#9a8a70", "#4a3e30", "stripes", 0.4, 0.25, "none", 0.07, 1.8, 0.45, 0.15, 0.42,
                  nocturnal=True),
    # Hyenas and dogs.
    "hyenaSpotted": _p("quad", "#a8905e", "#3e3020", "spots", 0.75, 0.28, "none", 0.14, 1.5, 0.6, 0.2, 0.45,
                       nocturnal=True),
    "hyenaStriped": _p("quad", "#a8a08a", "#35302a", "stripes", 0.75, 0.25, "none", 0.13, 1.5, 0.6, 0.2, 0.45,
                       nocturnal=True),
    "aardwolf": _p("quad", "#c4b08a", "#40382a", "stripes", 0.7, 0.25, "none", 0.09, 1.5, 0.55, 0.2, 0.42,
                   nocturnal=True),
    "jackal": _p("quad", "#a68a62", "#353535", "saddle", 0.8, 0.3, "none", 0.08, 1.6, 0.55, 0.25, 0.42),
    "batEaredFox": _p("quad", "#9a9080", "#2a2a2a", "none", 0.0, 0.3, "ears", 0.07, 1.6, 0.5, 0.2, 0.42,
                      nocturnal=True),
    "mongoose": _p("quad", "#6e5a46", "#4a3a2a", "none", 0.0, 0.3, "none", 0.05, 2.4, 0.25, 0.05, 0.4),
    "genet": _p("quad", "#c8bca8", "#2a2420", "spots", 0.8, 0.25, "none", 0.05, 2.2, 0.3, 0.05, 0.4,
                nocturnal=True),
    "civet": _p("quad", "#b0a690", "#1e1e1e", "spots", 0.8, 0.4, "none", 0.07, 2.0, 0.35, 0.05, 0.4,
                nocturnal=True),
    # Primates.
    "baboon": _p("quad", "#7a7058", "#5a5040", "none", 0.0, 0.3, "none", 0.13, 1.05, 0.3, 0.35, 0.45, herd=True),
    "vervetMonkey": _p("quad", "#8a8a78", "#1a1a1a", "none", 0.0, 0.3, "face", 0.09, 1.05, 0.3, 0.35, 0.45),
    # Birds.
    "otherBird": _p("bird", "#5e5650", "#d8d8d0", "twotone", 0.5, 0.3, "none", 0.06, 1.4, 0.5, 0.3, 0.35,
                    colour_jitter=0.25),
    "guineaFowl": _p("bird", "#3a3c44", "#e8e8f0", "dots", 0.9, 0.3, "none", 0.07, 1.3, 0.35, 0.2, 0.3, herd=True),
    "koriBustard": _p("bird", "#8a8270", "#dcd4c4", "twotone", 0.7, 0.3, "none", 0.11, 1.3, 0.8, 0.55, 0.28),
    "secretaryBird": _p("bird", "#a8a8a4", "#1e1e1e", "twotone", 0.6, 0.3, "none", 0.1, 1.3, 1.2, 0.45, 0.28),
    "vulture": _p("bird", "#4a3a2c", "#d0c0a8", "none", 0.0, 0.3, "face", 0.09, 1.1, 0.25, 0.2, 0.35, herd=True),
    # Small things.
    "hare": _p("quad", "#8a7a62", "#e0d8c8", "twotone", 0.4, 0.3, "ears", 0.05, 1.4, 0.2, 0.15, 0.5, nocturnal=True),
    "rodents": _p("quad", "#6a5a48", "#9a8a70", "none", 0.0, 0.3, "none", 0.04, 1.6, 0.12, 0.05, 0.45,
                  nocturnal=True),
    "insectSpider": _p("insect", "#2a2a20", "#6a5a30", "band", 0.5, 0.3, "none", 0.05, 1.5, 0.5, 0.0, 0.35),
    "reptiles": _p("quad", "#6a6a3a", "#3a3a20", "spots", 0.7, 0.35, "none", 0.04, 3.5, 0.12, 0.0, 0.35),
}

# Classes drawn deliberately alike (same shape and colour family, one small distinguishing cue).
LOOKALIKE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("lionFemale", "lionMale", "caracal"), ("gazelleThomsons", "gazelleGrants", "impala", "reedbuck"),
    ("dikDik", "steenbok", "duiker"), ("hartebeest", "topi"), ("wildebeest", "waterbuck"),
    ("cheetah", "leopard", "serval"), ("hyenaSpotted", "hyenaStriped", "aardwolf"), ("jackal", "batEaredFox"),
    ("genet", "civet"), ("honeyBadger", "zorilla"), ("koriBustard", "secretaryBird"), ("vulture", "otherBird"),
    ("elephant", "rhinoceros", "hippopotamus"), ("baboon", "vervetMonkey"), ("hare", "rodents", "mongoose"),
)

HUMAN = _p("upright", "#2f4f7f", "#3a2a20", "none", 0.0, 0.3, "none", 0.2, 0.42, 1.0, 0.0, 0.3,
           colour_jitter=0.3)


# ---------------------------------------------------------------------------------------------
# Planning: which captures exist, where and when (pure functions of the arguments).
# ---------------------------------------------------------------------------------------------

def coco_name(species: str) -> str:
    """LILA's COCO category name for a CSV species name (`vervetMonkey` -> `monkeyvervet`)."""
    return _COCO_RENAMES.get(species, species.lower())


def class_image_counts(scale: float = DEFAULT_SCALE,
                       min_captures_per_class: int = DEFAULT_MIN_CAPTURES) -> dict[str, int]:
    """Images per class: Table 4 train count times `scale`, never fewer than the minimum captures."""
    _check_scale(scale)
    _check_min_captures(min_captures_per_class)
    return {name: max(int(round(count * scale)), min_captures_per_class) for name, count in PAPER_TRAIN_COUNTS}


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
    _check_scale(scale)
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


def frames_per_capture(n_images: int, min_captures: int, rng: np.random.Generator) -> list[int]:
    """Splits `n_images` into captures of 1-3 frames (about 2.4 on average), at least `min_captures`."""
    low = max(min_captures, math.ceil(n_images / 3))
    n_captures = int(np.clip(round(n_images / 2.4), low, n_images))
    # Each capture has two optional frame slots; the extra frames fill distinct random slots.
    slots = rng.choice(2 * n_captures, size=n_images - n_captures, replace=False)
    frames = 1 + np.bincount(slots // 2, minlength=n_captures)
    return frames.tolist()


def plan_captures(scale: float = DEFAULT_SCALE, seed: int = 0,
                  min_captures_per_class: int = DEFAULT_MIN_CAPTURES) -> pd.DataFrame:
    """One row per capture: species (list), frames, count, site, roll, capture number, start time.

    Rows are ordered by site, roll and capture number; `first_image` is the roll-wide IMAG number
    of the capture's first frame.
    """
    counts = class_image_counts(scale, min_captures_per_class)
    rng = np.random.default_rng([seed, 0])
    rows = []
    for name, n_images in counts.items():
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


# ---------------------------------------------------------------------------------------------
# Metadata: the LILA CSV pair and the COCO Camera Traps JSON describe the same captures.
# ---------------------------------------------------------------------------------------------

def images_table(plan: pd.DataFrame) -> pd.DataFrame:
    """`SnapshotSerengeti_v2_1_images.csv` (written with its unnamed index column)."""
    frames = frame_rows(plan)
    return pd.DataFrame({"capture_id": [f["capture_id"] for f in frames],
                         "image_rank_in_capture": [f["rank"] for f in frames],
                         "image_path_rel": [f["path"] for f in frames]})


def _behaviour(species: str, rng: np.random.Generator) -> dict:
    """Volunteer-vote fractions like LILA's (empty for blank captures, as in the real CSV)."""
    if species == "blank":
        return dict(standing=np.nan, resting=np.nan, moving=np.nan, interacting=np.nan, young_present=np.nan)
    votes = rng.dirichlet([2.0, 1.0, 1.5])
    return dict(standing=round(float(votes[0]), 2), resting=round(float(votes[1]), 2),
                moving=round(float(votes[2]), 2), interacting=round(float(rng.random() < 0.1), 2),
                young_present=round(float(rng.random() < 0.15), 2))


def annotation_rows(plan: pd.DataFrame, seed: int) -> list[dict]:
    """One row per species per capture (two for the two-species capture), with vote fractions."""
    rng = np.random.default_rng([seed, 3])
    rows = []
    for cap in plan.itertuples(index=False):
        per_species = max(1, cap.count // len(cap.species)) if cap.count else 0
        for species in cap.species:
            rows.append(dict(capture_id=capture_id(cap.site, cap.roll, cap.capture), site=cap.site,
                             roll=cap.roll, capture=cap.capture, start=cap.start, subject_id=int(cap.subject_id),
                             species=species, count=per_species if species != "blank" else None,
                             **_behaviour(species, rng)))
    return rows


def annotations_table(plan: pd.DataFrame, seed: int) -> pd.DataFrame:
    """`SnapshotSerengeti_v2_1_annotations.csv`, same columns as LILA's (sample) file."""
    rows = annotation_rows(plan, seed)
    counts = pd.array([r["count"] for r in rows], dtype="Int64")
    return pd.DataFrame({
        "capture_id": [r["capture_id"] for r in rows],
        "season": SEASON,
        "site": [r["site"] for r in rows],
        "roll": [f"R{r['roll']}" for r in rows],
        "capture": [r["capture"] for r in rows],
        "capture_date_local": [r["start"].strftime("%Y-%m-%d") for r in rows],
        "capture_time_local": [r["start"].strftime("%H:%M:%S") for r in rows],
        "subject_id": [r["subject_id"] for r in rows],
        "question__species": [r["species"] for r in rows],
        "question__count_max": counts,
        "question__count_median": [float(c) if c is not None else np.nan for c in (r["count"] for r in rows)],
        "question__standing": [r["standing"] for r in rows],
        "question__resting": [r["resting"] for r in rows],
        "question__moving": [r["moving"] for r in rows],
        "question__young_present": [r["young_present"] for r in rows],
    })


def category_table() -> list[tuple[int, str, str]]:
    """(id, coco name, csv name): empty=0, human=1, then species by lowercase name, as LILA does.

    `bat` is listed (with count 0) like in LILA's category list although no demo capture shows one.
    """
    species = sorted([name for name, _ in PAPER_TRAIN_COUNTS] + ["bat"], key=str.lower)
    names = ["blank", "human"] + species
    return [(i, coco_name(n), n) for i, n in enumerate(names)]


def _uuid(rng: np.random.Generator) -> str:
    h = rng.bytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def coco_dataset(plan: pd.DataFrame, seed: int, image_size: tuple[int, int], info: dict) -> dict:
    """The COCO Camera Traps dict; sequence-level annotations are copied to every frame."""
    width, height = image_size
    cat_id = {csv: i for i, _, csv in category_table()}
    annotations_by_capture: dict[str, list[dict]] = {}
    for row in annotation_rows(plan, seed):
        annotations_by_capture.setdefault(row["capture_id"], []).append(row)
    rng = np.random.default_rng([seed, 4])
    images, annotations = [], []
    for frame in frame_rows(plan):
        image_id = frame["path"][: -len(".JPG")]
        stamp = frame["datetime"].strftime("%Y-%m-%d %H:%M:%S")
        images.append({"id": image_id, "file_name": frame["path"], "frame_num": frame["rank"],
                       "seq_id": frame["capture_id"], "width": width, "height": height, "corrupt": False,
                       "location": frame["site"], "seq_num_frames": frame["frames"], "datetime": stamp})
        for row in annotations_by_capture[frame["capture_id"]]:
            annotations.append({
                "sequence_level_annotation": True, "id": _uuid(rng), "category_id": cat_id[row["species"]],
                "seq_id": row["capture_id"], "season": SEASON, "site": row["site"],
                "datetime": row["start"].strftime("%Y-%m-%d %H:%M:%S"), "subject_id": row["subject_id"],
                # LILA writes a bare NaN where there is no count (strict JSON parsers reject it).
                "count": row["count"] if row["count"] is not None else float("nan"),
                "standing": row["standing"], "resting": row["resting"], "moving": row["moving"],
                "interacting": row["interacting"], "young_present": row["young_present"],
                "image_id": image_id})
    used = {}
    for ann in annotations:
        used[ann["category_id"]] = used.get(ann["category_id"], 0) + 1
    categories = [{"id": i, "name": name, "count": used.get(i, 0)} for i, name, _ in category_table()]
    return {"info": info, "images": images, "categories": categories, "annotations": annotations}


# ---------------------------------------------------------------------------------------------
# Rendering (numpy, float images in [0, 1], shape [H, W, 3]).
# ---------------------------------------------------------------------------------------------

def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float32) / 255.0


@dataclass
class _Canvas:
    """Pixel-centre coordinate grids shared by every shape drawn on one image size."""

    xs: np.ndarray
    ys: np.ndarray

    @classmethod
    def of(cls, width: int, height: int) -> "_Canvas":
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
        return cls(xs, ys)


def _ellipse(c: _Canvas, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Anti-aliased ellipse coverage (about one pixel of soft edge)."""
    rx, ry = max(rx, 0.6), max(ry, 0.6)
    d = np.sqrt(((c.xs - cx) / rx) ** 2 + ((c.ys - cy) / ry) ** 2)
    return np.clip((1.0 - d) * min(rx, ry) + 0.5, 0.0, 1.0)


def _segment(c: _Canvas, x0: float, y0: float, x1: float, y1: float, width: float) -> np.ndarray:
    """Anti-aliased thick line segment coverage."""
    dx, dy = x1 - x0, y1 - y0
    length2 = max(dx * dx + dy * dy, 1e-6)
    t = np.clip(((c.xs - x0) * dx + (c.ys - y0) * dy) / length2, 0.0, 1.0)
    d = np.hypot(c.xs - (x0 + t * dx), c.ys - (y0 + t * dy))
    return np.clip(max(width, 0.7) / 2 - d + 0.5, 0.0, 1.0)


def _paint(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * colour


def _texture(c: _Canvas, proto: Prototype, cx: float, cy: float, w: float, h: float, facing: int,
             phase: np.ndarray) -> np.ndarray:
    """Where on the body the second colour shows (0..1), in body-relative coordinates."""
    u = (c.xs - cx) / w * facing       # -0.5 rear .. 0.5 front
    v = (c.ys - cy) / h                # -0.5 top .. 0.5 belly
    period = max(proto.period * h, 1.6)
    kind = proto.pattern
    if kind == "stripes":
        return (np.sin(2 * np.pi * (c.xs - cx) / period + phase[0]) > 0.1).astype(np.float32)
    if kind == "hstripes":
        return (np.sin(2 * np.pi * (c.ys - cy) / period + phase[0]) > 0.2).astype(np.float32)
    if kind in ("spots", "dots"):
        s = np.sin(2 * np.pi * (c.xs + 0.5 * c.ys) / period + phase[0]) * np.sin(2 * np.pi * c.ys / period + phase[1])
        return (s > (0.45 if kind == "spots" else 0.7)).astype(np.float32)
    if kind == "band":
        return (np.abs(v - 0.05) < 0.12).astype(np.float32)
    if kind == "saddle":
        return (v < -0.1).astype(np.float32)
    if kind == "twotone":
        return (v > 0.15).astype(np.float32)
    if kind == "patch":
        return ((u > 0.05) & (v < 0.15)).astype(np.float32)
    return np.zeros_like(c.xs)


def _draw_animal(img: np.ndarray, c: _Canvas, proto: Prototype, cx: float, ground: float, h: float,
                 facing: int, colour: np.ndarray, colour2: np.ndarray, phase: np.ndarray,
                 eye_shine: bool) -> None:
    """Draws one individual standing on `ground` (y of the feet), body height `h` pixels."""
    w = proto.aspect * h
    leg = proto.legs * h
    cy = ground - leg - h / 2
    dark = colour * 0.8
    if proto.body == "upright":
        for dx in (-0.22, 0.22):
            _paint(img, _segment(c, cx + dx * w, cy, cx + dx * w, ground, 0.35 * w), colour2)
        _paint(img, _ellipse(c, cx, cy, w / 2, h / 2), colour)
        _paint(img, _ellipse(c, cx, cy - h / 2 - proto.head * h * 0.45, proto.head * h * 0.4,
                             proto.head * h * 0.5), _rgb("#8a6048"))
        return
    n_legs = {"quad": 4, "bird": 2, "insect": 6}[proto.body]
    offsets = {4: (-0.3, -0.17, 0.2, 0.32), 2: (-0.06, 0.08), 6: (-0.35, -0.2, -0.05, 0.05, 0.2, 0.35)}[n_legs]
    leg_width = max(0.8, (0.06 if proto.body != "quad" else 0.13) * h)
    for i, dx in enumerate(offsets):
        foot = cx + dx * w * facing + (dx * w * 0.6 if proto.body == "insect" else 0.0)
        _paint(img, _segment(c, cx + dx * w * facing, cy, foot, ground, leg_width), dark)
    body = _ellipse(c, cx, cy, w / 2, h / 2)
    _paint(img, body, colour)
    # Head: at the front, raised by the neck; a neck joins it to the body when raised.
    head_r = proto.head * h
    hx = cx + facing * (w / 2 + 0.15 * head_r)
    hy = cy - proto.neck * h - 0.1 * h
    if proto.neck > 0.15:
        _paint(img, _segment(c, cx + facing * 0.3 * w, cy - 0.1 * h, hx, hy, 0.45 * head_r + 0.1 * h), colour)
    if proto.mark == "mane":
        _paint(img, _ellipse(c, hx - facing * 0.25 * head_r, hy + 0.1 * head_r, 1.15 * head_r, 1.2 * head_r), colour2)
    if proto.mark == "ears":
        for ex in (-0.35, 0.25):
            _paint(img, _ellipse(c, hx + facing * ex * head_r, hy - 0.75 * head_r, 0.3 * head_r, 0.55 * head_r),
                   colour * 0.75)
    if proto.mark == "horns":
        for ex in (-0.25, 0.15):
            bx = hx + facing * ex * head_r
            _paint(img, _segment(c, bx, hy - 0.3 * head_r, bx - facing * 0.35 * head_r, hy - 1.3 * head_r,
                                 max(0.7, 0.16 * head_r)), colour2 if proto.colour2 != proto.colour else dark)
    head_colour = colour2 if proto.mark == "face" else colour
    _paint(img, _ellipse(c, hx + facing * 0.25 * head_r, hy, 0.6 * head_r, 0.42 * head_r), head_colour)
    if proto.mark == "horn":
        tip = hx + facing * 0.8 * head_r
        _paint(img, _segment(c, tip, hy - 0.1 * head_r, tip + facing * 0.15 * head_r, hy - 0.9 * head_r,
                             0.25 * head_r), colour2)
    if proto.mark == "tusks":
        tip = hx + facing * 0.7 * head_r
        _paint(img, _segment(c, tip, hy + 0.2 * head_r, tip + facing * 0.3 * head_r, hy - 0.35 * head_r,
                             max(0.7, 0.15 * head_r)), colour2)
    if proto.pattern != "none":
        texture = _texture(c, proto, cx, cy, w, h, facing, phase) * body * proto.strength
        _paint(img, texture, colour2)
    if proto.mark == "rump":
        _paint(img, _ellipse(c, cx - facing * 0.4 * w, cy - 0.05 * h, 0.12 * w, 0.3 * h), colour2)
    if eye_shine:
        _paint(img, _ellipse(c, hx + facing * 0.45 * head_r, hy - 0.1 * head_r, 0.8, 0.8),
               np.array([1.0, 1.0, 1.0], dtype=np.float32))


def site_background(site_index: int, seed: int, canvas: _Canvas) -> tuple[np.ndarray, float]:
    """The site's fixed scene (sky, horizon, grass texture, trees) and its horizon y in pixels."""
    rng = np.random.default_rng([seed, 2, site_index])
    height, width = canvas.xs.shape
    horizon = float(rng.uniform(0.25, 0.45)) * height
    sky_top, sky_low = _rgb("#7fa6cf") * rng.uniform(0.85, 1.05), _rgb("#c9d6dc") * rng.uniform(0.9, 1.05)
    grass_far, grass_near = _rgb("#a39a62"), _rgb("#8a7a45")
    grass_near = grass_near * rng.uniform(0.85, 1.1, 3).astype(np.float32)
    t_sky = np.clip(canvas.ys / horizon, 0, 1)[..., None]
    sky = sky_top * (1 - t_sky) + sky_low * t_sky
    t_ground = np.clip((canvas.ys - horizon) / (height - horizon), 0, 1)[..., None]
    ground = grass_far * (1 - t_ground) + grass_near * t_ground
    coarse = rng.normal(0, 1, (6, 8)).astype(np.float32)
    noise = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))
    fine = rng.normal(0, 1, (height, width)).astype(np.float32) * 0.03
    ground = ground * (1 + 0.08 * noise[..., None] + fine[..., None])
    is_ground = np.clip(canvas.ys - horizon + 0.5, 0, 1)[..., None]
    scene = (sky * (1 - is_ground) + ground * is_ground).astype(np.float32)
    for _ in range(int(rng.integers(0, 4))):
        tx = float(rng.uniform(0.05, 0.95)) * width
        base = horizon + float(rng.uniform(0.0, 0.15)) * height
        crown = float(rng.uniform(0.05, 0.1)) * height
        _paint(scene, _segment(canvas, tx, base, tx, base - 1.6 * crown, max(1.0, 0.2 * crown)), _rgb("#3d3024"))
        _paint(scene, _ellipse(canvas, tx, base - 1.8 * crown, 2.2 * crown, 0.55 * crown), _rgb("#3f5a2a"))
    return np.clip(scene, 0, 1), horizon


def _lighting(scene: np.ndarray, when: datetime, canvas: _Canvas, horizon: float,
              rng: np.random.Generator) -> np.ndarray:
    """Daylight brightness/greenness by time and date, or a night infrared frame."""
    hour = when.hour + when.minute / 60
    if hour >= 19 or hour < 6:
        lum = scene @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        height, width = lum.shape
        r2 = ((canvas.xs - width / 2) / width) ** 2 + ((canvas.ys - height * 0.6) / height) ** 2
        flash = 0.25 + 0.95 * np.exp(-r2 / 0.18)
        sky = np.clip((horizon - canvas.ys) / 3 + 0.5, 0, 1)
        lum = lum * flash * (1 - 0.85 * sky)
        lum = lum + rng.normal(0, 0.035, lum.shape).astype(np.float32)
        return lum[..., None] * np.array([0.97, 1.0, 1.04], dtype=np.float32)
    # Brightest at noon, dimmer and warmer towards 06:00 and 19:00.
    sun = math.sin(math.pi * (hour - 6) / 13)
    warm = np.array([1.0, 0.93, 0.82], dtype=np.float32) * (1 - sun) + sun
    out = scene * (0.55 + 0.5 * sun) * warm
    return out + rng.normal(0, 0.02, out.shape).astype(np.float32)


def _season_tint(scene: np.ndarray, when: datetime, horizon: float, canvas: _Canvas) -> np.ndarray:
    """Wet-season (Jan-May) grass is greener than dry-season grass."""
    green = max(0.0, math.cos(2 * math.pi * ((when - SEASON_START).days - 60) / 365))
    tint = np.array([1 - 0.15 * green, 1 + 0.08 * green, 1 - 0.1 * green], dtype=np.float32)
    is_ground = np.clip(canvas.ys - horizon + 0.5, 0, 1)[..., None]
    return scene * (1 - is_ground) + scene * tint * is_ground


@dataclass
class _Individual:
    proto: Prototype
    cx: float
    ground: float
    h: float
    facing: int
    colour: np.ndarray
    colour2: np.ndarray
    phase: np.ndarray
    velocity: float


def _individuals(species: list[str], count: int, width: int, height: int, horizon: float,
                 rng: np.random.Generator) -> list[_Individual]:
    """Places each animal (or person) of a capture: position, distance, facing, colour, texture phase."""
    out = []
    protos = [HUMAN if s == "human" else PROTOTYPES[s] for s in species if s != "blank"]
    for i, proto in enumerate(protos):
        n = count if len(protos) == 1 else 1
        for _ in range(max(n, 1)):
            depth = float(rng.uniform(0.55, 1.0))
            ground = horizon + (height - horizon) * (0.2 + 0.78 * depth)
            h = proto.size * height * depth * 1.6 * float(rng.uniform(0.85, 1.15))
            jitter = rng.normal(1.0, proto.colour_jitter, 3).astype(np.float32) * float(rng.normal(1.0, 0.06))
            colour = np.clip(_rgb(proto.colour) * jitter, 0, 1)
            colour2 = np.clip(_rgb(proto.colour2) * float(rng.normal(1.0, 0.05)), 0, 1)
            out.append(_Individual(proto, float(rng.uniform(0.25, 0.75)) * width, ground, h,
                                   int(rng.choice([-1, 1])), colour, colour2,
                                   rng.uniform(0, 2 * np.pi, 2).astype(np.float32),
                                   float(rng.normal(0, 0.025)) * width))
    # Farther animals first so nearer ones overlap them.
    return sorted(out, key=lambda ind: ind.ground)


def render_capture(species: list[str], count: int, frames: int, start: datetime, site_scene: np.ndarray,
                   horizon: float, canvas: _Canvas, rng: np.random.Generator) -> list[np.ndarray]:
    """The capture's frames as uint8 RGB arrays: same scene and animals, a small movement per frame."""
    height, width = canvas.xs.shape
    individuals = _individuals(species, count, width, height, horizon, rng)
    base = _season_tint(site_scene, start, horizon, canvas)
    night = start.hour >= 19 or start.hour < 6
    images = []
    for frame in range(frames):
        img = base.copy()
        for ind in individuals:
            # Under the infrared flash near animals reflect more light than the far background.
            boost = 1.3 if night else 1.0
            _draw_animal(img, canvas, ind.proto, ind.cx + ind.velocity * frame, ind.ground, ind.h, ind.facing,
                         np.clip(ind.colour * boost, 0, 1), np.clip(ind.colour2 * boost, 0, 1), ind.phase,
                         eye_shine=night and ind.proto.body != "insect")
        img = _lighting(img, start + timedelta(seconds=frame), canvas, horizon, rng)
        images.append((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    return images


def individual_box(ind: _Individual, frame: int, width: int, height: int) -> Optional[list[float]]:
    """Normalised [x, y, w, h] around one drawn individual in `frame` (the extent `_draw_animal`
    paints: body, legs to the ground, head, neck and marks), clipped to the image; None if outside."""
    proto, h = ind.proto, ind.h
    cx = ind.cx + ind.velocity * frame
    w = proto.aspect * h
    cy = ind.ground - proto.legs * h - h / 2
    head_r = proto.head * h
    if proto.body == "upright":
        x0, x1, y0 = cx - w / 2, cx + w / 2, cy - h / 2 - proto.head * h * 0.95
    else:
        hx = cx + ind.facing * (w / 2 + 0.15 * head_r)
        hy = cy - proto.neck * h - 0.1 * h
        reach = 0.56 * w if proto.body == "insect" else w / 2
        x0, x1 = min(cx - reach, hx - 1.2 * head_r), max(cx + reach, hx + 1.2 * head_r)
        y0 = min(cy - h / 2, hy - 1.3 * head_r)
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), ind.ground)
    if x1 <= x0 or y1 <= y0:
        return None
    return [round(x0 / width, 4), round(y0 / height, 4), round((x1 - x0) / width, 4), round((y1 - y0) / height, 4)]


def md_images(plan: pd.DataFrame, seed: int, image_size: tuple[int, int], horizons: dict[str, float]) -> list[dict]:
    """MD batch-output `images` entries: one box per drawn individual (animal, or person for humans)
    with a high confidence, and a low-confidence false box on blank frames (below MD's 0.2).

    Re-draws each capture's placements from its random stream (the one `render_capture` starts
    with), so the boxes match the written images without rendering them again."""
    width, height = image_size
    out = []
    for index, cap in enumerate(plan.itertuples(index=False)):
        placements = _individuals(list(cap.species), int(cap.count), width, height, horizons[cap.site],
                                  np.random.default_rng([seed, 1, index]))
        conf_rng = np.random.default_rng([seed, 2, index])
        for k in range(int(cap.frames)):
            detections = []
            for ind in placements:
                box = individual_box(ind, k, width, height)
                # About 1 in 20 boxes gets a confidence under MD's 0.2, like the animals MD misses.
                missed = conf_rng.random() < MISSED_SHARE
                conf = conf_rng.uniform(0.02, 0.19) if missed else conf_rng.uniform(0.6, 0.99)
                if box is not None:
                    detections.append({"category": "2" if ind.proto is HUMAN else "1",
                                       "conf": round(float(conf), 3), "bbox": box})
            if not placements:
                x, y = conf_rng.uniform(0.0, 0.7, 2)
                detections.append({"category": "1", "conf": round(float(conf_rng.uniform(0.01, 0.15)), 3),
                                   "bbox": [round(float(x), 4), round(float(y), 4), 0.2, 0.2]})
            detections.sort(key=lambda d: -d["conf"])
            out.append({"file": image_path(cap.site, cap.roll, cap.first_image + k), "detections": detections,
                        "max_detection_conf": max((d["conf"] for d in detections), default=0.0)})
    return out


def encode_jpeg(image: np.ndarray, when: datetime, quality: int = 90) -> bytes:
    """JPEG bytes with an EXIF timestamp and a `SYNTHETIC` make/description (fixed settings: deterministic)."""
    exif = Image.Exif()
    exif[0x010F] = "serengeti-tf SYNTHETIC"                       # Make
    exif[0x010E] = "SYNTHETIC demo image, not a real photograph"  # ImageDescription
    exif[0x0132] = when.strftime("%Y:%m:%d %H:%M:%S")             # DateTime
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# The job.
# ---------------------------------------------------------------------------------------------

def rendering_rate(images: int = 8, seed: int = 0, image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE) -> float:
    """Demo images drawn and JPEG-encoded per second on this machine (a short timed sample, no files)."""
    width, height = image_size
    canvas = _Canvas.of(width, height)
    scene, horizon = site_background(0, seed, canvas)
    plan = plan_captures(DEFAULT_SCALE, seed, DEFAULT_MIN_CAPTURES)
    rng = np.random.default_rng([seed, 2])
    started, done = time.perf_counter(), 0
    for cap in plan.itertuples(index=False):
        frames = render_capture(list(cap.species), int(cap.count), int(cap.frames), cap.start, scene, horizon,
                                canvas, rng)
        for image in frames:
            encode_jpeg(image, cap.start)
        done += len(frames)
        if done >= images:
            break
    return done / max(time.perf_counter() - started, 1e-6)


def _check_scale(scale: float) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise UserError(f"demo-data: scale must be a number in (0, 1], got {scale!r}")


def _check_min_captures(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"demo-data: min_captures_per_class must be an int >= 1, got {value!r}")


def _check_arguments(scale, seed, image_size, min_captures_per_class) -> tuple[int, int]:
    _check_scale(scale)
    _check_min_captures(min_captures_per_class)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"demo-data: seed must be an int >= 0, got {seed!r}")
    try:
        width, height = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise UserError(f"demo-data: image_size must be (width, height), got {image_size!r}") from None
    if not (32 <= width <= 2048 and 32 <= height <= 2048):
        raise UserError(f"demo-data: image_size must be between 32 and 2048 px per side, got {image_size!r}")
    return width, height


def _readme(summary: dict) -> str:
    return f"""SYNTHETIC DATA -- NOT REAL CAMERA-TRAP IMAGES

Written by `serengeti-tf demo-data` (serengeti-tf {__version__}, generator v{GENERATOR_VERSION}).
Every image here was drawn by a program: coloured "animal" shapes on a drawn savanna background.
No real photograph and no real label is included. Use it to try the tool, never to judge a species
classifier or to report results about real animals.

Layout and metadata mirror the LILA Snapshot Serengeti download (season 9):
  S9/<site>/<site>_R<roll>/S9_<site>_R<roll>_IMAG<nnnn>.JPG
  {IMAGES_CSV} + {ANNOTATIONS_CSV}   (LILA CSV pair, camelCase species)
  {COCO_JSON}                       (COCO Camera Traps; info.synthetic = true)
Both metadata forms describe the same captures and labels.
  {MD_JSON}                        (MegaDetector batch-output format: a box around every drawn
                                    animal, about {round(MISSED_SHARE * 100)}% given a missed-detection confidence < 0.2;
                                    boxes come from the drawing, not from MegaDetector)

Settings: scale {summary['scale']} of the paper's Table 4 training counts, seed {summary['seed']},
{summary['image_size'][0]}x{summary['image_size'][1]} px, at least {summary['min_captures_per_class']} capture(s) per class.
Contents: {summary['num_images']} images in {summary['num_captures']} captures at {len(summary['sites'])} sites;
{summary['num_labelled_images']} images of the 52 classes, plus {summary['blank_captures']} blank, {summary['human_captures']} human
and {summary['multi_species_captures']} two-species capture(s) for prepare's filters.
How the images are drawn (class prototypes, look-alike pairs, day/night): see the docstring of
serengeti_tf/demo_data.py. Per-class image counts: {SUMMARY_JSON}.

Next step:  serengeti-tf prepare PREPARED_DIR --config <this folder>/config.yaml
Crops:      the same with --detections <this folder>/{MD_JSON}
(add --config configs/demo.yaml for small CPU-sized images if demo-data was run without it)
"""


def write_demo_dataset(out_dir: str | Path, scale: float = DEFAULT_SCALE, seed: int = 0,
                       image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
                       min_captures_per_class: int = DEFAULT_MIN_CAPTURES, overwrite: bool = False,
                       config: Optional[cfg.Config] = None, progress: bool = True) -> dict:
    """Writes the synthetic LILA-layout dataset into `out_dir`; returns a summary dict.

    A folder already holding this exact dataset (same arguments) is resumed: finished images are
    kept and the rest written. A folder holding anything else is refused unless `overwrite`.
    `config` (e.g. resolved from configs/demo.yaml) is saved as `out_dir/config.yaml` with
    `data.metadata` and `data.image_root` pointing at the written files.
    """
    from tqdm import tqdm

    width, height = _check_arguments(scale, seed, image_size, min_captures_per_class)
    out = Path(out_dir)
    fingerprint = {"command": "demo-data", "generator_version": GENERATOR_VERSION, "scale": float(scale),
                   "seed": seed, "image_size": [width, height], "min_captures_per_class": min_captures_per_class}
    with output_lock(out):  # one process per output folder
        resumed = claim_output_dir(out, fingerprint, overwrite=overwrite)
        started = time.monotonic()
        plan = plan_captures(scale, seed, min_captures_per_class)
        canvas = _Canvas.of(width, height)
        scenes = {site: site_background(i, seed, canvas) for i, site in enumerate(SITES)}

        written = skipped = 0
        bar = tqdm(total=int(plan["frames"].sum()), desc="demo-data images", unit="img", disable=not progress)
        for index, cap in enumerate(plan.itertuples(index=False)):
            paths = [out / image_path(cap.site, cap.roll, cap.first_image + k) for k in range(cap.frames)]
            if all(p.exists() for p in paths):
                skipped += cap.frames
                bar.update(cap.frames)
                continue
            # One random stream per capture: a resumed run draws exactly what a fresh run would.
            rng = np.random.default_rng([seed, 1, index])
            scene, horizon = scenes[cap.site]
            frames = render_capture(list(cap.species), int(cap.count), int(cap.frames), cap.start, scene, horizon,
                                    canvas, rng)
            for k, (path, image) in enumerate(zip(paths, frames)):
                if not path.exists():
                    write_bytes(path, encode_jpeg(image, cap.start + timedelta(seconds=k)))
                    written += 1
                else:
                    skipped += 1
            bar.update(cap.frames)
        bar.close()

        counts = class_image_counts(scale, min_captures_per_class)
        labelled = plan[plan["species"].map(len) == 1].copy()
        labelled["name"] = labelled["species"].map(lambda s: s[0])
        per_class_captures = labelled.groupby("name").size().to_dict()
        summary = {
            "synthetic": True,
            "note": "SYNTHETIC demo data drawn by a program; not real camera-trap images",
            "scale": float(scale), "seed": seed, "image_size": [width, height],
            "min_captures_per_class": min_captures_per_class, "generator_version": GENERATOR_VERSION,
            "num_images": int(plan["frames"].sum()), "num_captures": len(plan),
            "num_labelled_images": int(sum(counts.values())),
            "blank_captures": int((labelled["name"] == "blank").sum()),
            "human_captures": int((labelled["name"] == "human").sum()),
            "multi_species_captures": int((plan["species"].map(len) > 1).sum()),
            "night_captures": int(sum(1 for t in plan["start"] if t.hour >= 19 or t.hour < 6)),
            "sites": sorted(plan["site"].unique().tolist()),
            "rolls": int(plan.groupby("site")["roll"].max().sum()),
            "classes": [{"species": name, "paper_train": paper, "images": counts[name],
                         "captures": int(per_class_captures.get(name, 0))} for name, paper in PAPER_TRAIN_COUNTS],
            "files": {"images_csv": IMAGES_CSV, "annotations_csv": ANNOTATIONS_CSV, "coco_json": COCO_JSON,
                      "md_detections": MD_JSON},
        }
        info = {"version": f"demo-{GENERATOR_VERSION}", "synthetic": True,
                "description": "SYNTHETIC Snapshot Serengeti S9-style demo data in the LILA COCO Camera Traps "
                               "schema, drawn by serengeti-tf demo-data; not real camera-trap images",
                "generator": f"serengeti-tf {__version__} demo-data", "scale": float(scale), "seed": seed}
        # Metadata last: a folder without it is visibly unfinished, and a rerun completes it.
        _write_indexed_csv(out / IMAGES_CSV, images_table(plan))
        _write_indexed_csv(out / ANNOTATIONS_CSV, annotations_table(plan, seed))
        write_text(out / COCO_JSON, json.dumps(coco_dataset(plan, seed, (width, height), info), indent=1) + "\n")
        write_md_file(out / MD_JSON, md_images(plan, seed, (width, height), {k: v[1] for k, v in scenes.items()}),
                      info={"detector": "SYNTHETIC: boxes drawn by serengeti-tf demo-data, not MegaDetector"})
        write_json(out / SUMMARY_JSON, summary)
        write_text(out / "README.txt", _readme(summary))
        _save_config(config, out)
        # Timing and resume counts are returned but not written, so reruns leave byte-identical files.
        return {**summary, "out_dir": str(out), "resumed": resumed, "images_written": written,
                "images_skipped": skipped,
                "seconds": round(time.monotonic() - started, 2)}


def format_summary(summary: dict) -> str:
    """A few lines for the terminal."""
    classes = summary["classes"]
    head, tail = classes[0], classes[-1]
    state = ("resumed: " if summary.get("resumed") else "") + (
        f"{summary.get('images_written', 0)} images written, {summary.get('images_skipped', 0)} already there")
    return "\n".join([
        f"SYNTHETIC demo data (not real camera-trap images) in {summary.get('out_dir', '')}",
        f"  {summary['num_images']} images in {summary['num_captures']} captures, {len(summary['sites'])} sites, "
        f"{summary['rolls']} rolls, {summary['image_size'][0]}x{summary['image_size'][1]} px, "
        f"{summary['night_captures']} night captures",
        f"  52 classes: {head['species']} {head['images']} images ... {tail['species']} {tail['images']} "
        f"(scale {summary['scale']} of Table 4); plus {summary['blank_captures']} blank, "
        f"{summary['human_captures']} human, {summary['multi_species_captures']} two-species capture(s)",
        f"  metadata: {IMAGES_CSV}, {ANNOTATIONS_CSV}, {COCO_JSON}; prepare with --config config.yaml",
        f"  detector boxes: {MD_JSON} (MegaDetector format; prepare --detections for crops)",
        f"  {state} in {summary.get('seconds', 0)} s",
    ])


def _write_indexed_csv(path: Path, frame: pd.DataFrame) -> None:
    """LILA's CSVs start with pandas' unnamed index column (header `,capture_id,...`)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=True, lineterminator="\n")


def _save_config(config: Optional[cfg.Config], out: Path) -> None:
    config = cfg.from_dict(cfg.to_dict(config)) if config is not None else cfg.Config()
    config.data.source_format = "lila_csv"
    config.data.metadata = [str((out / IMAGES_CSV).resolve()), str((out / ANNOTATIONS_CSV).resolve())]
    config.data.image_root = str(out.resolve())
    cfg.save_config(config, out)
