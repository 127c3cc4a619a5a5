"""PNG, JPEG and TIFF through Pillow, as one grayscale slice."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from .base import DEFAULT_LIMITS, ImageReadError, Limits, ScanImage

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff"}
# Modes whose values are already one grayscale channel; everything else goes through convert("L").
_GRAY_MODES = {"L", "I;16", "I;16L", "I;16B", "I", "F"}


def read_raster(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ScanImage:
    limits.check_bytes(len(data))
    # A PNG's size is in its first chunk: a tiny file can declare billions of pixels (issue #31).
    if data.startswith(_PNG_MAGIC) and data[12:16] == b"IHDR" and len(data) >= 24:
        limits.check_pixels(*struct.unpack(">II", data[16:24]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = _PIL_FORMATS.get(image.format or "")
            if fmt is None:
                raise ImageReadError(
                    f"{image.format} images are not supported; "
                    "upload PNG, JPEG, TIFF, DICOM or a Figshare .mat file."
                )
            # The header gives the size: refuse before decoding a single pixel.
            limits.check_pixels(*image.size)
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise ImageReadError(
                    f"The {fmt.upper()} file holds {frames} images; upload a single 2D slice."
                )
            image.load()
            pixels = _grayscale(image)
            metadata = _metadata(image)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = min(limits.max_pixels, Image.MAX_IMAGE_PIXELS or limits.max_pixels)
        raise ImageReadError(
            f"The image has too many pixels to open safely (decompression-bomb guard); "
            f"the limit is {limit:,} pixels."
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError(
            "The file is not an image we can read (PNG, JPEG, TIFF, DICOM or Figshare .mat)."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise ImageReadError("The image file is truncated or damaged and cannot be read.") from None
    return ScanImage(pixels=pixels, format=fmt, metadata=metadata)


def _grayscale(image: Image.Image) -> np.ndarray:
    if image.mode in _GRAY_MODES:
        pixels = np.asarray(image)
        if image.mode.startswith("I;16"):
            pixels = pixels.astype(np.uint16)
        return np.ascontiguousarray(pixels)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas become black, like the background of an MRI slice.
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("L"))


def _metadata(image: Image.Image) -> dict:
    meta: dict = {"mode": image.mode, "pil_format": image.format}
    dpi = image.info.get("dpi")
    if dpi:
        meta["dpi"] = [float(v) for v in dpi]
    return meta
