"""images.py: draft decoding, orientation, colour modes, sizes, corrupt files, determinism."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from serengeti_tf.data import images


def _scene(width: int, height: int) -> np.ndarray:
    """An RGB image with structure: red left half, blue right half, a green bar at the top."""
    array = np.zeros((height, width, 3), np.uint8)
    array[:, : width // 2] = (200, 30, 30)
    array[:, width // 2:] = (30, 30, 200)
    array[: height // 8] = (30, 200, 30)
    return array


def _save(path, array, mode="RGB", exif_orientation=None, quality=92):
    image = Image.fromarray(array).convert(mode)
    kwargs = {"quality": quality}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    image.save(path, format="JPEG", **kwargs)
    return path


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_big_image_is_scaled_to_short_side_keeping_aspect(tmp_path):
    path = _save(tmp_path / "big.jpg", _scene(1600, 1200))
    array = images.load_image(path, 120)
    assert array.dtype == np.uint8 and array.shape == (120, 160, 3)
    # Colours survive: left red, right blue, top green.
    assert array[60, 20, 0] > 150 and array[60, 20, 2] < 80
    assert array[60, 140, 2] > 150 and array[60, 140, 0] < 80
    assert array[3, 80, 1] > 150


def test_draft_decodes_at_a_reduced_scale_never_below_target(tmp_path, monkeypatch):
    path = _save(tmp_path / "big.jpg", _scene(1600, 1200))
    seen = {}
    original = Image.Image.resize

    def spy(self, size, *args, **kwargs):
        seen["decoded"] = self.size
        return original(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    images.load_image(path, 120)
    # 1200 / 8 = 150 >= 120 is the smallest libjpeg scale still >= the target.
    assert seen["decoded"] == (200, 150)


def test_small_image_is_upscaled_to_short_side(tmp_path):
    path = _save(tmp_path / "small.jpg", _scene(60, 40))
    assert images.load_image(path, 64).shape == (64, 96, 3)


def test_portrait_image_short_side_is_width(tmp_path):
    path = _save(tmp_path / "portrait.jpg", _scene(300, 600))
    assert images.load_image(path, 50).shape == (100, 50, 3)


def test_cmyk_image_comes_out_rgb_with_its_colours(tmp_path):
    path = _save(tmp_path / "cmyk.jpg", _scene(400, 300), mode="CMYK")
    assert Image.open(path).mode == "CMYK"
    array = images.load_image(path, 60)
    assert array.shape == (60, 80, 3)
    assert array[30, 10, 0] > 150 and array[30, 10, 2] < 90  # still red on the left
    assert array[30, 70, 2] > 150 and array[30, 70, 0] < 90  # still blue on the right


def test_greyscale_image_comes_out_rgb_with_equal_channels(tmp_path):
    path = _save(tmp_path / "grey.jpg", _scene(400, 300), mode="L")
    assert Image.open(path).mode == "L"
    array = images.load_image(path, 60)
    assert array.shape == (60, 80, 3)
    assert np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2])


def test_palette_png_comes_out_rgb(tmp_path):
    path = tmp_path / "palette.png"
    Image.fromarray(_scene(80, 60)).convert("P").save(path)
    assert images.load_image(path, 30).shape == (30, 40, 3)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_image_comes_out_upright(tmp_path, orientation):
    upright = _scene(800, 600)  # landscape, green bar on top
    # Store the pixels rotated (portrait raw grid) with the EXIF tag that undoes the rotation.
    raw = np.rot90(upright, k=1 if orientation == 6 else -1)  # 6: viewer turns it 90 deg clockwise
    path = _save(tmp_path / "rotated.jpg", np.ascontiguousarray(raw), exif_orientation=orientation)
    assert Image.open(path).size == (600, 800)
    array = images.load_image(path, 75)
    assert array.shape == (75, 100, 3)  # landscape, as displayed
    assert array[2, 50, 1] > 150  # green bar is at the top again
    assert array[40, 10, 0] > 150 and array[40, 90, 2] > 150  # red left, blue right


def test_truncated_jpeg_raises_corrupt_image_error(tmp_path):
    good = _save(tmp_path / "good.jpg", np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8))
    data = good.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(images.CorruptImageError, match="truncated"):
        images.load_image(truncated, 64)


def test_non_image_raises_corrupt_image_error(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not a jpeg at all")
    with pytest.raises(images.CorruptImageError):
        images.load_image(path, 64)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        images.load_image(tmp_path / "absent.jpg", 64)


def test_truncated_images_are_refused_when_pil_was_told_to_pad_them(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = _save(tmp_path / "ok.jpg", _scene(80, 60))
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        images.load_image(path, 30)


def test_encode_is_deterministic_and_decodes_back(tmp_path):
    array = images.load_image(_save(tmp_path / "a.jpg", _scene(640, 480)), 96)
    first, second = images.encode_jpeg(array, 90), images.encode_jpeg(array, 90)
    assert first == second and first[:2] == b"\xff\xd8"
    decoded = np.asarray(Image.open(io.BytesIO(first)))
    assert decoded.shape == array.shape
    assert np.abs(decoded.astype(int) - array.astype(int)).mean() < 6
    assert images.prepare_jpeg(tmp_path / "a.jpg", 96, 90) == first


def test_encode_rejects_wrong_arrays():
    with pytest.raises(ValueError, match="uint8"):
        images.encode_jpeg(np.zeros((4, 4), np.uint8), 90)
    with pytest.raises(ValueError, match="quality"):
        images.encode_jpeg(np.zeros((4, 4, 3), np.uint8), 0)


def test_source_file_is_never_modified(tmp_path):
    path = _save(tmp_path / "src.jpg", _scene(400, 300), exif_orientation=6)
    before = (_sha(path), path.stat().st_mtime_ns)
    images.load_image(path, 50)
    images.prepare_jpeg(path, 50, 80)
    assert (_sha(path), path.stat().st_mtime_ns) == before


def test_shared_edge_cases_decode_as_expected(shared_data):
    folder = shared_data / "other_formats" / "edge_cases"
    reference = images.load_image(folder / "african_elephants.jpg", 64)
    for name in ("african_elephants_bw.jpg", "african_elephants_cmyk.jpg",
                 "african_elephants_with_exif_orientation.jpg"):
        array = images.load_image(folder / name, 64)
        assert array.shape == reference.shape, name  # same upright landscape size as the original
    rotated = images.load_image(folder / "african_elephants_with_exif_orientation.jpg", 64)
    assert np.abs(rotated.astype(int) - reference.astype(int)).mean() < 25  # same picture, same way up
    with pytest.raises(images.CorruptImageError):
        images.load_image(folder / "african_elephants_truncated_file.jpg", 64)
