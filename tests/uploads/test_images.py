"""``corral.uploads.images``: untrusted bytes in, RGB arrays out, typed 4xx errors for the rest."""

from __future__ import annotations

import base64
import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from corral.config import LimitsConfig
from corral.errors import InvalidRequest, PayloadTooLarge
from corral.uploads.images import decode_base64, decode_base64_image, decode_image, decode_images

MAX = LimitsConfig().max_image_pixels


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def _pixels(seed: int = 0, size: tuple[int, int] = (37, 23)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming ``width x height``, with a few bytes of
    pixel data: what a decompression bomb looks like before it is inflated."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_png_round_trips_exactly() -> None:
    pixels = _pixels()
    decoded = decode_image(_encode(Image.fromarray(pixels)), max_pixels=MAX, param="image")
    assert decoded.dtype == np.uint8 and decoded.shape == (23, 37, 3)
    np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "I;16", "CMYK"])
def test_other_modes_become_rgb(mode: str) -> None:
    image = Image.fromarray(_pixels()).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    decoded = decode_image(_encode(image, fmt), max_pixels=MAX, param="image")
    assert decoded.shape == (23, 37, 3) and decoded.dtype == np.uint8
    if mode == "L":  # grey: three equal channels
        np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])


def test_jpeg_and_webp_decode_close_to_the_original() -> None:
    smooth = np.zeros((64, 96, 3), dtype=np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 96, dtype=np.uint8)
    smooth[..., 2] = 200
    for fmt in ("JPEG", "WEBP", "BMP", "GIF"):
        decoded = decode_image(_encode(Image.fromarray(smooth), fmt), max_pixels=MAX, param="x")
        assert decoded.shape == smooth.shape
        assert np.abs(decoded.astype(int) - smooth).mean() < 8, fmt


def test_exif_orientation_is_applied() -> None:
    pixels = _pixels(size=(40, 20))  # 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _encode(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)
    assert decode_image(data, max_pixels=MAX, param="image").shape == (40, 20, 3)


def test_base64_plain_data_url_and_line_breaks() -> None:
    pixels = _pixels(1)
    raw = _encode(Image.fromarray(pixels))
    text = base64.b64encode(raw).decode()
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    for given in (text, f"data:image/png;base64,{text}", wrapped, f"  {text}\n"):
        np.testing.assert_array_equal(
            decode_base64_image(given, max_pixels=MAX, param="images[0]"), pixels
        )
    assert decode_base64(f"DATA:application/octet-stream;base64,{text}", param="d") == raw


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("https://example.com/cat.png", "does not fetch URLs"),
        ("HTTP://example.com/cat.png", "does not fetch URLs"),
        ("file:///etc/passwd", "does not fetch URLs"),
        ("data:image/png,rawbytes", "without ';base64,'"),
        ("not base64 at all!", "not valid base64"),
        ("", "is empty"),
    ],
)
def test_bad_strings_are_422_naming_the_field(text: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_base64_image(text, max_pixels=MAX, param="images[3]")
    assert caught.value.param == "images[3]" and words in caught.value.message
    assert caught.value.status_code == 422


@pytest.mark.parametrize(
    "data",
    [
        b"definitely not an image",
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # EPS would run Ghostscript
        b"\x89PNG\r\n\x1a\n",  # a signature and nothing else
    ],
)
def test_unreadable_bytes_are_422(data: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_image(data, max_pixels=MAX, param="files[1]")
    assert caught.value.param == "files[1]" and "not an image corral can read" in caught.value.message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images_are_422(fmt: str) -> None:
    data = _encode(Image.fromarray(_pixels(2, (200, 150))), fmt)
    with pytest.raises(InvalidRequest) as caught:
        decode_image(data[: len(data) // 2], max_pixels=MAX, param="image")
    assert caught.value.param == "image"


@pytest.mark.parametrize(
    "side",
    [
        6000,  # over our limit (25 MP), under Pillow's
        10_000,  # 100 MP: between Pillow's limit and twice it (its warning)
        40_000,  # 1.6 GP: past twice Pillow's limit (its DecompressionBombError)
    ],
)
def test_decompression_bombs_are_refused_from_the_header(side: int) -> None:
    bomb = _png_header_only(side, side)
    assert len(bomb) < 200
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(PayloadTooLarge) as caught:
            decode_image(bomb, max_pixels=MAX, param="images[0]")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 10 * 2**20  # nothing the size of the image was allocated
    assert caught.value.status_code == 413 and caught.value.param == "images[0]"
    assert "server.limits.max_image_pixels" in caught.value.message
    assert f"{side}x{side}" in caught.value.message or side > 6000  # past Pillow: no size
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's global was left alone


def test_the_limit_is_the_callers() -> None:
    data = _encode(Image.fromarray(_pixels(3, (100, 100))))
    assert decode_image(data, max_pixels=10_000, param="image").shape == (100, 100, 3)
    with pytest.raises(PayloadTooLarge, match="100x100 = 10000 pixels"):
        decode_image(data, max_pixels=9_999, param="image")


def test_many_images_are_bounded_in_count_and_total_pixels() -> None:
    one = _encode(Image.fromarray(_pixels(4, (100, 100))))
    limits = LimitsConfig(max_images=3, max_request_pixels=25_000)
    frames = decode_images([(one, "images[0]"), (one, "images[1]")], limits)
    assert [f.shape for f in frames] == [(100, 100, 3)] * 2
    with pytest.raises(PayloadTooLarge, match=r"server\.limits\.max_request_pixels is 25000") as c:
        decode_images([(one, f"images[{i}]") for i in range(3)], limits)
    assert c.value.param == "images[2]"
    with pytest.raises(PayloadTooLarge, match=r"server\.limits\.max_images is 3"):
        decode_images([(one, f"files[{i}]") for i in range(4)], limits.model_copy(update={"max_request_pixels": 10**8}))
