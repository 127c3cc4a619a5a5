"""Pictures and files made from a case for the web pages: the slice, overlays, thumbnails, NIfTI masks and
DICOM Segmentations.

No database writes here; the pages call these to answer image and download requests.
"""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

from cases.dicom_out import (
    DicomExportError,
    MaskOrigin,
    SliceGeometry,
    mask_segmentation_bytes,
    nifti_affine,
    slice_geometry,
)
from cases.readers import to_uint8
from cases.selectors import scan_dicom_header, scan_read

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


def png_bytes(array: np.ndarray) -> bytes:
    """A PNG of a uint8/uint16 grayscale or uint8 RGB array (zlib's default level)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def mask_png_bytes(mask: np.ndarray) -> bytes:
    """A 0/255 PNG of a mask (bool, or anything above 0 is tumour)."""
    return png_bytes(np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8))


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


def mask_nifti_bytes(mask: np.ndarray, geometry: SliceGeometry) -> bytes:
    """A gzipped NIfTI-1 volume (W x H x 1, uint8 0/1) in the usual radiological index order.

    NIfTI indexes (i, j, k) = (column, row, slice), so the array is transposed; the voxel size is (column
    spacing, row spacing, slice thickness) when the scan has a pixel spacing (DICOM), else 1 with the unit
    left unknown. A DICOM slice that its header places (orientation and position) gets the scanner's
    affine (sform and qform code 1), so the mask overlays the DICOM in a viewer that reads both.
    """
    row_mm, col_mm = geometry.row_mm, geometry.col_mm
    data = (np.asarray(mask) > 0).astype(np.uint8).T[:, :, None]
    zooms = (float(col_mm or row_mm), float(row_mm), geometry.thickness_mm) if row_mm else (1.0, 1.0, 1.0)
    affine = nifti_affine(geometry)
    image = nib.Nifti1Image(data, np.diag([*zooms, 1.0]) if affine is None else affine)
    if affine is not None:
        image.set_sform(affine, code="scanner")
        image.set_qform(affine, code="scanner")
    image.header.set_zooms(zooms)
    image.header.set_xyzt_units(xyz="mm" if row_mm else "unknown")
    description = "TumorSite tumour mask (1 = tumour)"
    if row_mm and not geometry.thickness_from:
        description += "; slice thickness unknown, 1 mm written"
    image.header["descrip"] = description.encode()
    return gzip.compress(image.to_bytes())


def case_slice_geometry(case) -> SliceGeometry:
    """The case's pixel spacing, and for DICOM its slice thickness, orientation and position."""
    scan = case.scan
    return slice_geometry(
        scan_dicom_header(scan=scan), row_mm=scan.pixel_spacing_mm, col_mm=scan.pixel_spacing_col_mm
    )


def mask_version_origin(version) -> MaskOrigin:
    """What a ground-truth outline's DICOM Segmentation says made it: a clinician or the dataset's expert
    (MANUAL). ``version`` is a MaskVersion, or None for an outline stored before versions were kept."""
    if version is None:
        return MaskOrigin(key="current", description="Tumour outline (ground truth)")
    return MaskOrigin(
        key=f"v{version.number}",
        description=f"Tumour outline v{version.number}: {version.get_source_display().lower()}"[:64],
        instance_number=version.number,
    )


def case_mask_segmentation_bytes(case, mask: np.ndarray, origin: MaskOrigin) -> bytes:
    """One of the case's masks as a DICOM Segmentation of its stored DICOM (``cases.dicom_out``).

    Raises DicomExportError, saying why, for a case whose scan is not DICOM or cannot be referenced.
    """
    header = scan_dicom_header(scan=case.scan)
    if header is None:
        raise DicomExportError(
            f"Case {case.pk}'s scan was uploaded as {case.scan.get_format_display()}, not DICOM: a DICOM "
            "Segmentation must reference a DICOM source image. Download the mask as PNG or NIfTI instead."
        )
    return mask_segmentation_bytes(source=header, mask=mask, origin=origin)


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
