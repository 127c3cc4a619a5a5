"""Pictures and files made from a case for the web pages: the slice, overlays, thumbnails, NIfTI masks.

No database writes here; the pages call these to answer image and download requests.
"""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

from cases.readers import to_uint8
from cases.selectors import scan_read

THUMBNAIL_PX = 160
# RGB of the overlay drawn on server-made pictures (thumbnails, the printed report).
OVERLAY_RGB = (255, 64, 32)


def slice_uint8(case) -> np.ndarray:
    """The case's slice as 8-bit grayscale at its own size (DICOM and 16-bit PNG rescaled for display)."""
    return to_uint8(np.asarray(scan_read(scan=case.scan).pixels))


def contour(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The outline of a bool mask: mask pixels with a neighbour outside it."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, iterations=width, border_value=0)


def overlay(
    image: np.ndarray,
    mask: np.ndarray | None,
    *,
    filled: bool = False,
    opacity: float = 0.45,
    line_width: int = 1,
) -> np.ndarray:
    """RGB uint8 picture of the slice with the mask drawn as an outline (or filled, semi-transparent)."""
    rgb = np.repeat(np.asarray(image, dtype=np.float32)[:, :, None], 3, axis=2)
    if mask is not None and np.asarray(mask).shape == image.shape:
        colour = np.array(OVERLAY_RGB, dtype=np.float32)
        if filled:
            m = np.asarray(mask, dtype=bool)
            rgb[m] = (1 - opacity) * rgb[m] + opacity * colour
            rgb[contour(m)] = colour
        else:
            rgb[contour(mask, line_width)] = colour
    return np.clip(rgb, 0, 255).astype(np.uint8)


def thumbnail(image: np.ndarray, mask: np.ndarray | None, size: int = THUMBNAIL_PX) -> np.ndarray:
    """A small overlay picture; the outline is drawn thick enough to survive the downscale."""
    scale = max(image.shape) / size
    picture = Image.fromarray(overlay(image, mask, line_width=max(1, round(scale))))
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.asarray(picture)


def png_bytes(array: np.ndarray, *, optimize: bool = False) -> bytes:
    """A PNG of a uint8/uint16 grayscale or uint8 RGB array; ``optimize`` trades time for a smaller file."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array)).save(buf, format="PNG", optimize=optimize)
    return buf.getvalue()


def mask_png_bytes(mask: np.ndarray, *, optimize: bool = False) -> bytes:
    """A 0/255 PNG of a mask (bool, or anything above 0 is tumour)."""
    return png_bytes(np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8), optimize=optimize)


def pixels_png_bytes(pixels: np.ndarray) -> bytes:
    """Lossless PNG of a grayscale slice: 8-bit when the values fit, else 16-bit (shifted if negative)."""
    values = np.asarray(pixels)
    if values.dtype != np.uint8:
        low, high = float(values.min()), float(values.max())
        if np.issubdtype(values.dtype, np.integer) and low >= 0 and high <= 255:
            values = values.astype(np.uint8)
        elif np.issubdtype(values.dtype, np.integer) and high - min(low, 0) <= 65535:
            values = (values.astype(np.int64) - int(min(low, 0))).astype(np.uint16)
        else:  # float data (e.g. after DICOM lookup tables): keep 16 bits of it
            scale = 65535.0 / (high - low) if high > low else 0.0
            values = np.round((values - low) * scale).astype(np.uint16)
    return png_bytes(values)


def mask_nifti_bytes(mask: np.ndarray, spacing_mm: tuple[float | None, float | None]) -> bytes:
    """A gzipped NIfTI-1 volume (W x H x 1, uint8 0/1) in the usual radiological index order.

    NIfTI indexes (i, j, k) = (column, row, slice), so the array is transposed; the voxel size is the
    pixel spacing when the scan carries one (DICOM), else 1 with the unit left unknown.
    """
    row_mm, col_mm = spacing_mm
    data = (np.asarray(mask) > 0).astype(np.uint8).T[:, :, None]
    zooms = (float(col_mm or row_mm), float(row_mm), 1.0) if row_mm else (1.0, 1.0, 1.0)
    image = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    image.header.set_zooms(zooms)
    image.header.set_xyzt_units(xyz="mm" if row_mm else "unknown")
    image.header["descrip"] = b"TumorSite tumour mask (1 = tumour)"
    return gzip.compress(image.to_bytes())


def mask_from_png_data(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask from a PNG drawn in the browser: painted (opaque) pixels are tumour.

    Raises ValueError with a plain message when the picture is not a PNG of the slice's size.
    """
    try:
        picture = Image.open(io.BytesIO(data))
    except Exception as exc:
        raise ValueError("The corrected mask could not be read as a PNG picture.") from exc
    # The header alone gives the size: a wrong (or huge) picture is refused before it is decoded.
    if (picture.height, picture.width) != tuple(shape):
        raise ValueError(
            f"The corrected mask is {picture.width}x{picture.height}; the slice is {shape[1]}x{shape[0]}."
        )
    try:
        picture.load()
    except Exception as exc:
        raise ValueError("The corrected mask could not be read as a PNG picture.") from exc
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        return np.asarray(picture.convert("RGBA"))[:, :, 3] >= 128
    return np.asarray(picture.convert("L")) >= 128
