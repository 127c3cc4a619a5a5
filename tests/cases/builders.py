"""Builders for the files the reader and importer tests feed in, all made in the test."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import h5py
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from cases.rendering import png_bytes  # noqa: F401 (the tests' builder for uploads)

# What a real Figshare N.mat starts with: MATLAB's 128-byte text header inside a 512-byte HDF5 userblock.
MATLAB_HEADER = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Sat Jun  6 10:00:00 2015 HDF5 schema 1.00 ."
)

PHI = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-0042",
    "PatientBirthDate": "19700101",
    "PatientAddress": "1 Hospital Road",
    "InstitutionName": "St Elsewhere Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "AccessionNumber": "ACC-777",
    "OperatorsName": "Tech^Terry",
}


def write_figshare_mat(
    path: Path,
    image: np.ndarray,
    mask: np.ndarray | None,
    *,
    label: int = 2,
    pid: str = "MR040240B",
    border: np.ndarray | None = None,
    with_cjdata: bool = True,
) -> Path:
    """Write ``image``/``mask`` (given in PNG orientation, row 0 at the top) the way MATLAB v7.3 does.

    MATLAB is column-major, so HDF5 holds the transpose of what MATLAB shows; h5py hands that back,
    and the reader's ``.T`` has to undo it.
    """
    with h5py.File(path, "w", userblock_size=512) as f:
        group = f.create_group("cjdata" if with_cjdata else "something_else")
        group["image"] = np.asarray(image, dtype=np.int16).T
        if mask is not None:
            group["tumorMask"] = np.asarray(mask, dtype=np.uint8).T
        group["label"] = np.array([[float(label)]])
        group["PID"] = np.array([[ord(c)] for c in pid], dtype=np.uint16)
        group["tumorBorder"] = (border if border is not None else np.array([10.0, 20.0, 11.0, 21.0]))[None, :]
    with open(path, "r+b") as f:
        f.write(MATLAB_HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    return path


def dicom_bytes(
    pixels: np.ndarray | None = None,
    *,
    frames: int = 1,
    photometric: str = "MONOCHROME2",
    window=(100, 200),
    rescale=(1, 0),
    spacing=(0.5, 0.75),
    burned_in: bool = False,
    phi: bool = True,
) -> bytes:
    """A single-slice MR DICOM (uint16) with PHI in the header and a private tag."""
    pixels = np.arange(48, dtype=np.uint16).reshape(6, 8) * 5 if pixels is None else pixels.astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    if phi:
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        ds.add_new((0x0019, 0x0010), "LO", "ACME")
        ds.add_new((0x0019, 0x1001), "LO", "private note about Jane")
    ds.Modality = "MR"
    ds.Manufacturer = "ACME"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if spacing:
        ds.PixelSpacing = list(spacing)
    if burned_in:
        ds.BurnedInAnnotation = "YES"
    if frames > 1:
        ds.NumberOfFrames = frames
        pixels = np.stack([pixels] * frames)
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def copy_figshare_rows(source: Path, target: Path, ids: list[str]) -> Path:
    """A small copy of the shared dataset (a few rows of cases.csv with their images and masks)."""
    (target / "images").mkdir(parents=True)
    (target / "masks").mkdir()
    with (source / "cases.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [row for row in reader if row["id"] in ids]
        columns = reader.fieldnames
    with (target / "cases.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        for folder in ("images", "masks"):
            shutil.copy(source / folder / f"{row['id']}.png", target / folder / f"{row['id']}.png")
    return target


def synthetic_slice(height: int = 64, width: int = 64, *, centre=(24, 40), radius: int = 8):
    """A head-like 8-bit slice with one bright round lesion, and the lesion's bool mask."""
    yy, xx = np.mgrid[:height, :width]
    image = np.zeros((height, width), np.uint8)
    head = ((yy - height / 2) / (0.45 * height)) ** 2 + ((xx - width / 2) / (0.4 * width)) ** 2 <= 1
    image[head] = 100
    lesion = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2
    image[lesion] = 220
    return image, lesion
