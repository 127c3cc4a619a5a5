"""PNG, JPEG and TIFF through Pillow, as one grayscale slice."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from .base import DEFAULT_LIMITS, ImageReadError, Limits, ScanImage

_PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff"}
# Modes whose values are already one grayscale channel; everything else goes through convert("L").
_GRAY_MODES = {"L", "I;16", "I;16L", "I;16B", "I", "F"}


def read_raster(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ScanImage:
    limits.check_bytes(len(data))
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
        raise ImageReadError("The image is too large to open safely (decompression-bomb guard).") from None
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
