"""Draws a capture's frames (numpy, float images in [0, 1], shape [H, W, 3]) and encodes them as JPEG.

Default 128x96 px. A capture is drawn on its camera site's fixed background: sky gradient, horizon,
grass texture and 0-3 acacia trees, all chosen per site; greenness follows the date (wet vs dry
season) and brightness the time of day. Each individual is drawn from its class's prototype
(prototypes.py). Per image the generator varies position, distance (size), facing, number of
individuals (herd species draw 1-3), colour and brightness, texture phase and sensor noise; frames
of a capture share everything except a small movement and the noise, as in a real burst. Captures
between 19:00 and 06:00 become night infrared frames: greyscale luminance with a slight IR tint, a
flash fall-off towards the edges, a dark sky, more noise and eye-shine; colour cues are lost at
night. Everything is drawn from the random stream the caller passes, so the same stream gives the
same pixels; JPEG encoding uses fixed settings.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

import numpy as np
from PIL import Image

from serengeti_tf.demo.capture_plan import SEASON_START
from serengeti_tf.demo.prototypes import HUMAN, PROTOTYPES, Prototype

DEFAULT_IMAGE_SIZE = (128, 96)


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float32) / 255.0


@dataclass
class Canvas:
    """Pixel-centre coordinate grids shared by every shape drawn on one image size."""

    xs: np.ndarray
    ys: np.ndarray

    @classmethod
    def of(cls, width: int, height: int) -> "Canvas":
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
        return cls(xs, ys)


def _ellipse(c: Canvas, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Anti-aliased ellipse coverage (about one pixel of soft edge)."""
    rx, ry = max(rx, 0.6), max(ry, 0.6)
    d = np.sqrt(((c.xs - cx) / rx) ** 2 + ((c.ys - cy) / ry) ** 2)
    return np.clip((1.0 - d) * min(rx, ry) + 0.5, 0.0, 1.0)


def _segment(c: Canvas, x0: float, y0: float, x1: float, y1: float, width: float) -> np.ndarray:
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


def _texture(c: Canvas, proto: Prototype, cx: float, cy: float, w: float, h: float, facing: int,
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


def _draw_animal(img: np.ndarray, c: Canvas, proto: Prototype, cx: float, ground: float, h: float,
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
                             proto.head * h * 0.5), rgb("#8a6048"))
        return
    n_legs = {"quad": 4, "bird": 2, "insect": 6}[proto.body]
    offsets = {4: (-0.3, -0.17, 0.2, 0.32), 2: (-0.06, 0.08), 6: (-0.35, -0.2, -0.05, 0.05, 0.2, 0.35)}[n_legs]
    leg_width = max(0.8, (0.06 if proto.body != "quad" else 0.13) * h)
    for dx in offsets:
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


def site_background(site_index: int, seed: int, canvas: Canvas) -> tuple[np.ndarray, float]:
    """The site's fixed scene (sky, horizon, grass texture, trees) and its horizon y in pixels."""
    rng = np.random.default_rng([seed, 2, site_index])
    height, width = canvas.xs.shape
    horizon = float(rng.uniform(0.25, 0.45)) * height
    sky_top, sky_low = rgb("#7fa6cf") * rng.uniform(0.85, 1.05), rgb("#c9d6dc") * rng.uniform(0.9, 1.05)
    grass_far, grass_near = rgb("#a39a62"), rgb("#8a7a45")
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
        _paint(scene, _segment(canvas, tx, base, tx, base - 1.6 * crown, max(1.0, 0.2 * crown)), rgb("#3d3024"))
        _paint(scene, _ellipse(canvas, tx, base - 1.8 * crown, 2.2 * crown, 0.55 * crown), rgb("#3f5a2a"))
    return np.clip(scene, 0, 1), horizon


def _lighting(scene: np.ndarray, when: datetime, canvas: Canvas, horizon: float,
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


def _season_tint(scene: np.ndarray, when: datetime, horizon: float, canvas: Canvas) -> np.ndarray:
    """Wet-season (Jan-May) grass is greener than dry-season grass."""
    green = max(0.0, math.cos(2 * math.pi * ((when - SEASON_START).days - 60) / 365))
    tint = np.array([1 - 0.15 * green, 1 + 0.08 * green, 1 - 0.1 * green], dtype=np.float32)
    is_ground = np.clip(canvas.ys - horizon + 0.5, 0, 1)[..., None]
    return scene * (1 - is_ground) + scene * tint * is_ground


@dataclass
class Individual:
    """One animal (or person) of a capture: prototype, position, size, facing, colours, texture phase, drift."""

    proto: Prototype
    cx: float
    ground: float
    h: float
    facing: int
    colour: np.ndarray
    colour2: np.ndarray
    phase: np.ndarray
    velocity: float


def place_individuals(species: list[str], count: int, width: int, height: int, horizon: float,
                      rng: np.random.Generator, closeup: bool = False) -> list[Individual]:
    """Places each animal (or person) of a capture: position, distance, facing, colour, texture phase.

    `closeup`: the animal walked up to the camera: drawn large (its whole figure 45-65% of the image
    height, whatever the species' real size) near the centre, so a small training crop still shows
    its shape and coat (the demo's learnable framing)."""
    out = []
    protos = [HUMAN if s == "human" else PROTOTYPES[s] for s in species if s != "blank"]
    for proto in protos:
        n = count if len(protos) == 1 else 1
        for _ in range(max(n, 1)):
            if closeup:
                ground, h = _closeup_size(proto, width, height, rng)
            else:
                depth = float(rng.uniform(0.55, 1.0))
                ground = horizon + (height - horizon) * (0.2 + 0.78 * depth)
                h = proto.size * height * depth * 1.6 * float(rng.uniform(0.85, 1.15))
            jitter = rng.normal(1.0, proto.colour_jitter, 3).astype(np.float32) * float(rng.normal(1.0, 0.06))
            colour = np.clip(rgb(proto.colour) * jitter, 0, 1)
            colour2 = np.clip(rgb(proto.colour2) * float(rng.normal(1.0, 0.05)), 0, 1)
            centre = rng.uniform(0.4, 0.6) if closeup else rng.uniform(0.25, 0.75)
            out.append(Individual(proto, float(centre) * width, ground, h,
                                   int(rng.choice([-1, 1])), colour, colour2,
                                   rng.uniform(0, 2 * np.pi, 2).astype(np.float32),
                                   float(rng.normal(0, 0.025)) * width))
    # Farther animals first so nearer ones overlap them.
    return sorted(out, key=lambda ind: ind.ground)


def _closeup_size(proto: Prototype, width: int, height: int, rng: np.random.Generator) -> tuple[float, float]:
    """(ground y, body height) of a close-up: the figure (legs, body, neck and head) spans 45-65% of
    the image height and at most half its width."""
    tall = 1.0 + proto.legs + max(proto.neck, 0.0) + 0.6 * proto.head
    wide = proto.aspect + 1.5 * proto.head
    h = min(float(rng.uniform(0.45, 0.65)) * height / tall, 0.5 * width / wide)
    return float(rng.uniform(0.8, 0.92)) * height, h


def render_capture(species: list[str], count: int, frames: int, start: datetime, site_scene: np.ndarray,
                   horizon: float, canvas: Canvas, rng: np.random.Generator,
                   closeup: bool = False) -> list[np.ndarray]:
    """The capture's frames as uint8 RGB arrays: same scene and animals, a small movement per frame
    (`closeup`: see `place_individuals`)."""
    height, width = canvas.xs.shape
    individuals = place_individuals(species, count, width, height, horizon, rng, closeup)
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


def individual_box(ind: Individual, frame: int, width: int, height: int) -> Optional[list[float]]:
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


def encode_jpeg(image: np.ndarray, when: datetime, quality: int = 90) -> bytes:
    """JPEG bytes with an EXIF timestamp and a `SYNTHETIC` make/description (fixed settings: deterministic)."""
    exif = Image.Exif()
    exif[0x010F] = "serengeti-tf SYNTHETIC"                       # Make
    exif[0x010E] = "SYNTHETIC demo image, not a real photograph"  # ImageDescription
    exif[0x0132] = when.strftime("%Y:%m:%d %H:%M:%S")             # DateTime
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()
