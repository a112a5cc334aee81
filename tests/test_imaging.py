"""Every kind of input a user can upload is handled or refused with a clear message."""

import io

import numpy as np
import pytest
from PIL import Image

from segdemo.imaging import MAX_SIDE, ImageInputError, prepare_image


def save(tmp_path, image: Image.Image, name: str, **kwargs) -> str:
    path = tmp_path / name
    image.save(path, **kwargs)
    return str(path)


def test_rgb_png_passes_unchanged(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    prepared = prepare_image(save(tmp_path, Image.fromarray(pixels), "a.png"))
    assert np.array_equal(prepared.pixels, pixels)
    assert not prepared.resized and prepared.notes == ()


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is text, not pixels")
    with pytest.raises(ImageInputError, match="not an image"):
        prepare_image(str(path))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageInputError, match="empty"):
        prepare_image(str(path))


def test_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageInputError, match="damaged or truncated"):
        prepare_image(str(path))


def test_tiny_image_is_refused(tmp_path):
    with pytest.raises(ImageInputError, match="1×1 pixels.*at least 32×32"):
        prepare_image(save(tmp_path, Image.new("RGB", (1, 1)), "dot.png"))


def test_a_large_image_is_downscaled_with_a_note(tmp_path):
    path = save(tmp_path, Image.new("1", (7000, 7000)), "large.png", compress_level=1)
    prepared = prepare_image(path)
    assert prepared.size == (MAX_SIDE, MAX_SIDE)
    assert prepared.original_size == (7000, 7000)
    assert "Downscaled from 7000×7000" in prepared.notes[0]


def test_an_image_over_the_pixel_budget_is_refused_from_its_header(tmp_path):
    path = save(tmp_path, Image.new("1", (20000, 20000)), "huge.png", compress_level=1)
    with pytest.raises(ImageInputError, match="over 50 megapixels"):
        prepare_image(path)


@pytest.mark.parametrize(
    "mode, value",
    [("L", 200), ("I;16", 51400), ("P", 3), ("RGBA", (10, 20, 30, 255)), ("CMYK", (0, 0, 0, 0))],
)
def test_modes_become_rgb(tmp_path, mode, value):
    suffix = "jpg" if mode == "CMYK" else "png"
    image = Image.new(mode, (40, 50), value)
    if mode == "P":
        image.putpalette([0, 0, 0] * 3 + [255, 0, 0] + [0, 0, 0] * 252)
    prepared = prepare_image(save(tmp_path, image, f"m.{suffix}"))
    assert prepared.pixels.shape == (50, 40, 3) and prepared.pixels.dtype == np.uint8
    expected = {"L": 200, "I;16": 200, "P": (255, 0, 0), "RGBA": (10, 20, 30), "CMYK": 255}
    assert np.allclose(prepared.pixels[25, 20], expected[mode], atol=2)


def test_transparency_is_flattened_onto_white(tmp_path):
    prepared = prepare_image(save(tmp_path, Image.new("RGBA", (40, 40), (0, 0, 0, 0)), "t.png"))
    assert (prepared.pixels == 255).all()
    assert "Transparent" in prepared.notes[0]


def test_exif_rotation_is_applied_and_coordinates_follow(tmp_path):
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :10] = 255  # a white stripe on the left edge of the stored image
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    prepared = prepare_image(save(tmp_path, image, "r.jpg", exif=exif, quality=95))
    assert prepared.size == (60, 40)  # displayed upright: portrait
    assert prepared.pixels[:10, :, 0].mean() > 200  # the stripe is now at the top


def test_coordinates_map_between_original_and_working_pixels(tmp_path):
    image = Image.new("RGB", (4000, 2000), (90, 90, 90))
    prepared = prepare_image(save(tmp_path, image, "wide.png"))
    assert prepared.size == (512, 1024)
    points = np.array([[4000.0, 2000.0], [1000.0, 500.0]])
    np.testing.assert_allclose(prepared.to_working(points), [[1024, 512], [256, 128]])
    np.testing.assert_allclose(prepared.to_original(prepared.to_working(points)), points)
    mask = np.zeros((512, 1024), np.uint8)
    mask[:, 512:] = 255
    back = prepared.mask_to_original(mask)
    assert back.shape == (2000, 4000) and back[:, 2001:].min() == 255 and back[:, :1999].max() == 0


def test_arrays_of_any_depth_are_accepted():
    floats = np.random.default_rng(1).random((40, 40, 3))
    assert prepare_image(floats).pixels.dtype == np.uint8
    with pytest.raises(ImageInputError, match="HxW"):
        prepare_image(np.zeros((40, 40, 5)))
    with pytest.raises(ImageInputError, match="No image"):
        prepare_image(None)
