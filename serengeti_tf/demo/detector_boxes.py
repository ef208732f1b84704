"""MegaDetector-format boxes around the animals the demo drew (taken from the drawing, not from a detector)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serengeti_tf.demo.capture_plan import image_path
from serengeti_tf.demo.prototypes import HUMAN
from serengeti_tf.demo.render import individual_box, place_individuals

MD_JSON = "md_detections.json"  # MegaDetector-format boxes around the drawn animals (crop path)
MISSED_SHARE = 0.05  # boxes given a below-threshold confidence in MD_JSON


def md_images(plan: pd.DataFrame, seed: int, image_size: tuple[int, int], horizons: dict[str, float]) -> list[dict]:
    """MD batch-output `images` entries: one box per drawn individual (animal, or person for humans)
    with a high confidence, and a low-confidence false box on blank frames (below MD's 0.2).

    Re-draws each capture's placements from its random stream (the one `render_capture` starts
    with), so the boxes match the written images without rendering them again."""
    width, height = image_size
    out = []
    for index, cap in enumerate(plan.itertuples(index=False)):
        placements = place_individuals(list(cap.species), int(cap.count), width, height, horizons[cap.site],
                                       np.random.default_rng([seed, 1, index]), bool(cap.closeup))
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
