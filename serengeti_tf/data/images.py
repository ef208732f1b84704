"""Decoding source images once, small: DCT-domain downscaling, EXIF orientation, RGB, resize, JPEG.

Why draft mode: a 2048x1536 camera-trap JPEG stored at a 256-pixel short side does not need its
full-resolution pixels. `Image.draft` asks libjpeg to decode at 1/2, 1/4 or 1/8 scale directly from
the DCT coefficients, which skips most of the inverse-DCT and colour-conversion work. We request the
smallest scale whose short side is still >= the target, then finish with an anti-aliased resize.

Orientation: draft works on the raw (stored) pixel grid, EXIF orientation is applied afterwards.
A 90-degree rotation swaps width and height but not the length of the shorter side, so the draft
request computed on the raw grid gives the same short side as one computed on the upright image.

Size rule: the stored image's shorter side is exactly `short_side` (aspect ratio kept). Smaller
sources are upscaled to it, because the training pipeline crops `model.input_size` squares from
images it assumes are at least `data.image_size` on the short side.

This module imports no TensorFlow so that worker processes stay light.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from serengeti_tf.data import storage

# EXIF tag 0x0112: orientation values 5-8 involve a transpose (width and height swap).
_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


class CorruptImageError(Exception):
    """A source image that cannot be decoded completely (truncated, not an image, broken header)."""


def _draft_request(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """The raw-grid (width, height) whose short side equals `short_side`, for `Image.draft`."""
    width, height = size
    scale = short_side / min(width, height)
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def target_size(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side == `short_side` and the aspect ratio kept."""
    width, height = size
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def _decode(path: Path | str, short_side: int) -> Image.Image:
    """Opens, draft-decodes, loads, orients and converts to RGB; PIL errors propagate."""
    source = io.BytesIO(storage.read_bytes(path)) if storage.is_url(path) else path
    with Image.open(source) as image:
        if image.format == "JPEG":
            # Only a mode change YCbCr->RGB is allowed by draft; CMYK/L stay and are converted below.
            image.draft("RGB", _draft_request(image.size, short_side))
        image.load()
        try:
            oriented = ImageOps.exif_transpose(image)
        except Exception:  # noqa: BLE001 - a broken EXIF block should not lose a decodable photo
            oriented = image
        if oriented.mode != "RGB":
            # CMYK (libjpeg handles Adobe's inverted CMYK), L, P, RGBA, ... -> RGB.
            oriented = oriented.convert("RGB")
        elif oriented is image:
            oriented = image.copy()  # detach from the file before it is closed
    return oriented


def load_image(path: str | os.PathLike, short_side: int) -> np.ndarray:
    """Decodes `path` once into an upright uint8 RGB array (H, W, 3) whose shorter side is `short_side`.

    Raises FileNotFoundError when the file does not exist and CorruptImageError when it exists but
    cannot be decoded completely (truncated files are never padded with grey). Never writes to `path`.
    """
    return np.asarray(_load_resized(_path(path), short_side))


def _path(path: str | os.PathLike) -> Path | str:
    """A local path as a Path; an object-store URL stays a string (`storage`)."""
    return str(path) if storage.is_url(path) else Path(path)


def _load_resized(path: Path | str, short_side: int) -> Image.Image:
    if short_side < 1:
        raise ValueError(f"short_side must be >= 1, got {short_side}")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Another library switched PIL to pad truncated files silently; we must see them as corrupt.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; truncated images would be padded "
                           "silently. Unset it before preparing images.")
    image = decode_image(path, short_side)
    size = target_size(image.size, short_side)
    if image.size != size:
        # PIL's resize filters scale their support when downscaling, so this is anti-aliased.
        image = image.resize(size, Image.Resampling.BICUBIC)
    return image


def decode_image(path: Path | str, short_side: int) -> Image.Image:
    """Upright RGB decode whose shorter side is >= `short_side` (DCT draft down to it, no resize).

    `path` is a local path or an object-store URL. Raises FileNotFoundError / CorruptImageError like
    `load_image`.
    """
    if not storage.is_url(path) and not Path(path).is_file():  # a URL's absence shows when it is read
        raise FileNotFoundError(f"image not found: {path}")
    try:
        return _decode(path, short_side)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise CorruptImageError(f"{path}: {err}") from None


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of the image as shown (EXIF orientation applied), from the header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            try:
                orientation = image.getexif().get(_ORIENTATION_TAG, 1)
            except Exception:  # noqa: BLE001 - a broken EXIF block: the decode treats it as upright too
                orientation = 1
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise CorruptImageError(f"{path}: {err}") from None
    return (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)


def encode_image(image: Image.Image, quality: int) -> bytes:
    """Baseline JPEG bytes of a PIL image (deterministic: no EXIF, ICC or timestamps)."""
    return _encode(image, quality)


def encode_jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    """Encodes a uint8 RGB array (H, W, 3) as baseline JPEG; the same input gives the same bytes."""
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint8 array of shape (H, W, 3), got {array.dtype} {array.shape}")
    return _encode(Image.fromarray(array, mode="RGB"), quality)


def _encode(image: Image.Image, quality: int) -> bytes:
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    buffer = io.BytesIO()
    # No EXIF, ICC or timestamps are written, so the bytes depend on the pixels and quality only.
    image.save(buffer, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buffer.getvalue()


def prepare_jpeg(path: str | os.PathLike, short_side: int, quality: int) -> bytes:
    """load_image + encode_jpeg without the numpy round trip: the worker-process job of `prepare`."""
    return _encode(_load_resized(_path(path), short_side), quality)


def prepare_jpegs(paths: list[str], short_side: int, quality: int) -> list[bytes | str]:
    """Worker job of `prepare` (one chunk): JPEG bytes per image, or the error text of a corrupt/missing one.

    Lives here, not in `shards`, so spawned workers import only numpy and PIL.
    """
    out: list[bytes | str] = []
    for path in paths:
        try:
            out.append(prepare_jpeg(path, short_side, quality))
        except (CorruptImageError, FileNotFoundError) as err:
            out.append(f"{type(err).__name__}: {err}")
    return out
