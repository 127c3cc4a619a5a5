"""The original Figshare brain-tumour files (Jun Cheng): MATLAB v7.3, i.e. HDF5 behind a 512-byte header.

Each file holds a struct ``cjdata``: ``image`` (int16), ``tumorMask`` (uint8 0/1), ``label`` (1x1 double:
1 meningioma, 2 glioma, 3 pituitary), ``PID`` (char as uint16 codes) and ``tumorBorder`` (x1 y1 x2 y2 ...).
MATLAB stores arrays column-major, so h5py sees them transposed: ``.T`` restores the orientation of the
PNGs in the shared dataset (row 0 at the top).
"""

from __future__ import annotations

import io

import h5py
import numpy as np

from .base import DEFAULT_LIMITS, FIGSHARE_LABELS, ImageReadError, Limits, ScanImage

MAT5_MAGIC = b"MATLAB 5.0 MAT-file"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def has_hdf5_signature(data: bytes) -> bool:
    # HDF5 allows its signature at 0, 512, 1024, ...; MATLAB v7.3 puts a 512-byte header in front.
    return any(data[offset : offset + 8] == HDF5_MAGIC for offset in (0, 512, 1024, 2048))


def read_mat(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ScanImage:
    limits.check_bytes(len(data))
    if data.startswith(MAT5_MAGIC) and b"MATLAB 7.3" not in data[:128]:
        raise ImageReadError(
            "This is an older MATLAB (v5/v7) file; "
            "only the Figshare brain-tumour files (MATLAB v7.3) are supported."
        )
    if not has_hdf5_signature(data):
        if data.startswith(b"MATLAB 7.3"):
            raise ImageReadError(
                "The .mat file is truncated: its MATLAB header is there but the data is not."
            )
        raise ImageReadError("The file is not a MATLAB v7.3 .mat file (the Figshare brain-tumour format).")
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            if "cjdata" not in f:
                raise ImageReadError(
                    "The .mat file has no 'cjdata' struct, "
                    "so it is not from the Figshare brain-tumour dataset."
                )
            cj = f["cjdata"]
            if "image" not in cj:
                raise ImageReadError("The .mat file's cjdata struct has no image.")
            shape = cj["image"].shape
            if len(shape) != 2:
                raise ImageReadError(f"The .mat image has shape {shape}; a single 2D slice is needed.")
            limits.check_pixels(shape[0], shape[1])
            pixels = np.ascontiguousarray(cj["image"][()].T)
            mask = np.ascontiguousarray(cj["tumorMask"][()].T).astype(bool) if "tumorMask" in cj else None
            label_code = int(np.asarray(cj["label"][()]).ravel()[0]) if "label" in cj else None
            patient_id = _matlab_string(cj["PID"][()]) if "PID" in cj else None
            border = None
            if "tumorBorder" in cj:
                flat = np.asarray(cj["tumorBorder"][()], dtype=np.float64).ravel()
                border = flat[: flat.size // 2 * 2].reshape(-1, 2)
    except ImageReadError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError):
        raise ImageReadError("The .mat file is truncated or damaged and cannot be read.") from None

    if mask is not None and mask.shape != pixels.shape:
        raise ImageReadError(f"The .mat tumour mask is {mask.shape} but the image is {pixels.shape}.")
    if label_code is not None and label_code not in FIGSHARE_LABELS:
        raise ImageReadError(f"The .mat label {label_code} is not 1, 2 or 3 (meningioma, glioma, pituitary).")
    return ScanImage(
        pixels=pixels,
        format="mat",
        mask=mask,
        label=FIGSHARE_LABELS.get(label_code) if label_code is not None else None,
        patient_id=patient_id or None,
        tumour_border=border,
        metadata={"figshare_label": label_code, "dtype": str(pixels.dtype)},
    )


def _matlab_string(codes: np.ndarray) -> str:
    return "".join(chr(int(c)) for c in np.asarray(codes).ravel() if int(c) != 0).strip()
