"""Fixtures for the clinical-record tests."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.cases.builders import copy_figshare_rows


@pytest.fixture
def figshare_subset(figshare_dir, tmp_path) -> Path:
    """Six rows of the shared set, two per tumour type, copied into tmp_path."""
    with (figshare_dir / "cases.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    ids = []
    for label in ("1", "2", "3"):
        ids += [row["id"] for row in rows if row["label"] == label][:2]
    return copy_figshare_rows(figshare_dir, tmp_path / "figshare-subset", ids)
