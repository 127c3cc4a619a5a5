"""Keyed pseudonyms: the same hospital patient always gets the same code, which says nothing about them.

A DICOM upload's patient is ``patient_pseudonym(IssuerOfPatientID, PatientID)``: an HMAC-SHA256 under
``settings.TUMORSITE_PSEUDONYM_KEY`` (docs/operations.md), so two uploads of one patient join one Patient
row while the PatientID itself is never stored. Without the key nobody can recompute a code from a
hospital number (a plain hash of a 7-digit MRN is reversed by trying them all); with another key every
patient gets new codes: rotating the key splits each patient in two. A DICOM study and series are keyed
the same way (``study_pseudonym``, ``series_pseudonym``): the files of one study join one Study row.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from django.conf import settings

PATIENT_PREFIX = "pt-"
STUDY_PREFIX = "st-"
SERIES_PREFIX = "se-"
# 16 hex digits (64 bits): a collision is about one in 10^7 even among a million patients.
_HEX_DIGITS = 16
PSEUDONYM_PATTERN = re.compile(rf"^{PATIENT_PREFIX}[0-9a-f]{{{_HEX_DIGITS}}}$")


def patient_pseudonym(issuer: str, patient_id: str, *, key: str | None = None) -> str:
    """``pt-<16 hex>`` for a patient ID and the authority that issued it ("" when the file names none).

    The ID's surrounding spaces (DICOM pads values) are ignored; anything else, case included, counts:
    hospitals' IDs are case-sensitive. ``key`` defaults to the site's pseudonym key.
    """
    patient_id = (patient_id or "").strip()
    if not patient_id:
        raise ValueError("a pseudonym needs a patient ID")
    digest = _hmac("patient", (issuer or "").strip(), patient_id, key=key)
    return f"{PATIENT_PREFIX}{digest[:_HEX_DIGITS]}"


def _hmac(kind: str, *parts: str, key: str | None) -> str:
    secret = settings.TUMORSITE_PSEUDONYM_KEY if key is None else key
    # NUL separates the parts (no DICOM string holds one), so ("AB", "C") and ("A", "BC") differ; the kind
    # keeps a patient's code and any other code made from the same strings apart.
    message = "\x00".join((kind, *parts)).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def study_pseudonym(study_uid: str, *, key: str | None = None) -> str:
    """``st-<16 hex>`` for a DICOM StudyInstanceUID: the key by which a study's later files join it.

    Keyed like a patient's code: a UID is often built from the scanner's serial number and the
    acquisition time, which say where and when the patient was scanned.
    """
    return _uid_pseudonym("study", STUDY_PREFIX, study_uid, key=key)


def series_pseudonym(series_uid: str, *, key: str | None = None) -> str:
    """``se-<16 hex>`` for a DICOM SeriesInstanceUID (which slices were acquired together)."""
    return _uid_pseudonym("series", SERIES_PREFIX, series_uid, key=key)


def _uid_pseudonym(kind: str, prefix: str, uid: str, *, key: str | None) -> str:
    uid = (uid or "").strip().rstrip("\x00")
    if not uid:
        raise ValueError(f"a {kind} pseudonym needs a UID")
    return f"{prefix}{_hmac(kind, uid, key=key)[:_HEX_DIGITS]}"
