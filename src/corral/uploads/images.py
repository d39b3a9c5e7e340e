"""Decode untrusted images (base64, data-URL or raw bytes) into RGB ``uint8`` arrays, safely.

Why each check is here:

* **Pixels before decoding.** ``PIL.Image.open`` only reads the header, so the size is
  known before any pixel is decoded: a 200-byte PNG that inflates to 40,000 x 40,000
  pixels is refused with a 413 naming ``server.limits.max_image_pixels`` instead of
  taking gigabytes. Pillow's own bomb guard (``DecompressionBombError``, and the
  warning it gives between its limit and twice that) is caught too; nothing here
  changes Pillow's global ``MAX_IMAGE_PIXELS`` (the limit is capped below it instead).
* **Known formats only.** Pillow is asked for raster formats (PNG, JPEG, WebP, BMP, GIF,
  TIFF, PPM): never EPS, whose plugin runs Ghostscript on the input.
* **No degenerate shapes.** An image more than ``MAX_ASPECT_RATIO`` times wider than
  tall (or taller than wide) is a 422: models that scale an image's short side up to
  their input size would enlarge a 70-byte 1x100 PNG to tens of millions of pixels.
  Steps that enlarge check the size they will produce too (``check_resized``).
* **No URLs.** An ``http(s)://`` string is refused (422): fetching what a client names
  would let it make the server reach other hosts.
* **Corrupt or truncated data** is a 422 naming the field, never a 500.

The first frame of an animated image is used; the EXIF orientation is applied, so boxes
and text positions refer to the image as it is displayed.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from corral.config import LimitsConfig
from corral.errors import InvalidRequest, PayloadTooLarge

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "FORMATS",
    "MAX_ASPECT_RATIO",
    "check_aspect",
    "check_image_count",
    "check_resized",
    "decode_base64",
    "decode_base64_image",
    "decode_image",
    "decode_images",
    "open_image",
]

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "PPM")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*);base64,", re.I)
_WHITESPACE = re.compile(r"\s+")
_URL = re.compile(r"^[a-z][a-z0-9+.-]{0,15}://", re.I)  # http, https, file, ftp, s3...
MAX_ASPECT_RATIO = 100  # a 1:100 strip is no document or photo (a long receipt is ~1:15)


def _pillow() -> tuple[Any, Any]:
    """Pillow's Image and ImageOps modules, or ExpertUnavailable with the install hint."""
    from corral.experts.base import require

    return require("PIL.Image", "vision"), require("PIL.ImageOps", "vision")


def check_image_count(count: int, limits: LimitsConfig, param: str = "images") -> None:
    """413 naming ``server.limits.max_images`` when a request carries too many images."""
    if count > limits.max_images:
        raise PayloadTooLarge(
            f"{param} has {count} images; server.limits.max_images is {limits.max_images}",
            param=param,
        )


def check_aspect(width: int, height: int, *, param: str) -> None:
    """422 for an image (or page) whose sides differ more than ``MAX_ASPECT_RATIO`` times."""
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InvalidRequest(
            f"{param} is {width}x{height}: one side is more than {MAX_ASPECT_RATIO} times the "
            "other, too thin to be read (crop or pad it)",
            param=param,
        )


def check_resized(
    size: tuple[int, int], *, max_pixels: int, param: str, step: str
) -> None:
    """413 before a pre-processing ``step`` enlarges an image to ``size`` (width, height)
    beyond ``server.limits.max_image_pixels``: the limit bounds memory, not only input."""
    width, height = size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"{param}: {step} would enlarge it to {width}x{height} = {width * height} pixels; "
            f"server.limits.max_image_pixels is {max_pixels}",
            param=param,
        )


def decode_base64(text: str, *, param: str) -> bytes:
    """The bytes of a base64 string or a ``data:...;base64,`` URL (422 otherwise)."""
    stripped = text.strip()
    if _URL.match(stripped):
        raise InvalidRequest(
            f"{param} is a URL; corral does not fetch URLs: send the image itself as base64 "
            "(or a data: URL), as a multipart upload, or as a file id from POST /v1/files",
            param=param,
        )
    match = _DATA_URL.match(stripped)
    if match is not None:
        stripped = stripped[match.end() :]
    elif stripped[:5].lower() == "data:":
        raise InvalidRequest(
            f"{param} is a data: URL without ';base64,'; only base64 data URLs are accepted",
            param=param,
        )
    try:
        data = base64.b64decode(_WHITESPACE.sub("", stripped), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{param} is not valid base64", param=param) from None
    if not data:
        raise InvalidRequest(f"{param} is empty", param=param)
    return data


def open_image(data: bytes, *, max_pixels: int, param: str) -> Image:
    """Decode ``data`` into an RGB Pillow image after checking its header's size."""
    pil, image_ops = _pillow()
    if not data:
        raise InvalidRequest(f"{param} is empty", param=param)
    pil.init()  # registers every plugin (what Pillow does on demand): MPO, WebP, TIFF
    try:
        image = pil.open(io.BytesIO(data), formats=FORMATS)
    except (pil.DecompressionBombError, pil.DecompressionBombWarning):
        raise _too_many_pixels(param, None, max_pixels) from None
    except Exception:  # plugins raise many kinds (struct.error, SyntaxError...) on bad bytes
        raise InvalidRequest(
            f"{param} is not an image corral can read (formats: {', '.join(FORMATS)})",
            param=param,
        ) from None
    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise InvalidRequest(f"{param} has no pixels ({width}x{height})", param=param)
        check_aspect(width, height, param=param)
        if width * height > max_pixels:
            raise _too_many_pixels(param, (width, height), max_pixels)
        try:
            image.seek(0)
            oriented = image_ops.exif_transpose(image)
            rgb = oriented.convert("RGB")
            rgb.load()
        except (pil.DecompressionBombError, pil.DecompressionBombWarning):
            raise _too_many_pixels(param, (width, height), max_pixels) from None
        except Exception as exc:  # corrupt pixel data or EXIF: the caller's bytes, not a bug
            raise InvalidRequest(
                f"{param} is corrupt or truncated ({type(exc).__name__})", param=param
            ) from None
    return rgb


def decode_image(data: bytes, *, max_pixels: int, param: str) -> np.ndarray:
    """``data`` (a PNG, JPEG, ... file's bytes) as an ``[height, width, 3]`` uint8 RGB array."""
    return np.asarray(open_image(data, max_pixels=max_pixels, param=param), dtype=np.uint8)


def decode_base64_image(text: str, *, max_pixels: int, param: str) -> np.ndarray:
    """A base64 string or data-URL image as an ``[height, width, 3]`` uint8 RGB array."""
    return decode_image(decode_base64(text, param=param), max_pixels=max_pixels, param=param)


def decode_images(blobs: Iterable[tuple[bytes, str]], limits: LimitsConfig) -> list[np.ndarray]:
    """Decode a request's ``(bytes, param)`` pairs under every image limit: the count
    (``max_images``), each image's pixels, and all of them together
    (``max_request_pixels``, so 64 small PNGs that each inflate to 25 MP cannot take
    gigabytes). Blocking: call it off the event loop."""
    frames: list[np.ndarray] = []
    total = 0
    for data, param in blobs:
        check_image_count(len(frames) + 1, limits, param=param.partition("[")[0])
        frame = decode_image(data, max_pixels=limits.max_image_pixels, param=param)
        total += frame.shape[0] * frame.shape[1]
        if total > limits.max_request_pixels:
            raise PayloadTooLarge(
                f"the images up to {param} have {total} pixels together; "
                f"server.limits.max_request_pixels is {limits.max_request_pixels}",
                param=param,
            )
        frames.append(frame)
    return frames


def _too_many_pixels(
    param: str, size: tuple[int, int] | None, max_pixels: int
) -> PayloadTooLarge:
    shown = f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels" if size else "too many pixels"
    return PayloadTooLarge(
        f"{param} has {shown}; server.limits.max_image_pixels is {max_pixels}", param=param
    )
