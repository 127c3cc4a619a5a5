"""Nearest-neighbour search over the case base: exact numpy, or pgvector HNSW on PostgreSQL.

Both backends keep one contract: ``search(vector, n, tumour_type=None, exclude_patient_ids=(),
exclude_case_ids=(), exact=False)`` returns up to ``n`` ``Hit``s of base cases, nearest first
(Euclidean distance on the combined vector). The type filter is applied inside the search, not after it:
- numpy: a boolean mask before the arg-partition;
- pgvector: pgvector's ``L2Distance`` over the HNSW index of ``CaseFeatures.Meta.indexes``, with
  ``hnsw.iterative_scan = relaxed_order`` (pgvector >= 0.8), so the HNSW scan keeps going
  until enough rows pass the filter instead of returning ``ef_search`` rows and filtering them to few.
  Relaxed order may return rows slightly out of order, so hits are re-sorted by exact distance.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max
from pgvector.django import L2Distance

from recommender.models import CaseFeatures


@dataclass(frozen=True)
class Hit:
    case_id: int
    distance: float
    tumour_type: str | None
    patient_id: int | None


class NumpyIndex:
    """Exact search; the base is loaded once per process and reloaded when it changes."""

    name = "numpy"
    _lock = threading.Lock()
    _cache: dict = {}

    def _arrays(self):
        base = CaseFeatures.objects.filter(in_base=True, combined__isnull=False)
        stamp = tuple(base.aggregate(n=Count("id"), last=Max("updated_at"), scaler=Max("scaler_id")).values())
        with self._lock:
            if self._cache.get("stamp") != stamp:
                rows = list(
                    base.order_by("case_id").values_list("case_id", "patient_id", "tumour_type", "combined")
                )
                type(self)._cache = {
                    "stamp": stamp,
                    "case_ids": np.array([r[0] for r in rows], dtype=np.int64),
                    "patient_ids": np.array([r[1] if r[1] is not None else -1 for r in rows], dtype=np.int64),
                    "types": np.array([r[2] or "" for r in rows], dtype=object),
                    "vectors": np.stack([r[3] for r in rows]) if rows else np.zeros((0, 1), np.float32),
                }
            return self._cache

    def search(
        self,
        vector,
        n: int,
        *,
        tumour_type: str | None = None,
        exclude_patient_ids=(),
        exclude_case_ids=(),
        exact: bool = False,
    ) -> list[Hit]:
        a = self._arrays()
        if len(a["case_ids"]) == 0:
            return []
        q = np.asarray(vector, dtype=np.float32)
        keep = np.ones(len(a["case_ids"]), dtype=bool)
        if tumour_type:
            keep &= a["types"] == tumour_type
        if len(exclude_patient_ids):
            keep &= ~np.isin(a["patient_ids"], np.fromiter(exclude_patient_ids, dtype=np.int64))
        if len(exclude_case_ids):
            keep &= ~np.isin(a["case_ids"], np.fromiter(exclude_case_ids, dtype=np.int64))
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            return []
        d = np.sqrt(((a["vectors"][idx] - q) ** 2).sum(axis=1, dtype=np.float64))
        n = min(n, idx.size)
        top = np.argpartition(d, n - 1)[:n] if n < idx.size else np.arange(idx.size)
        top = top[np.lexsort((a["case_ids"][idx[top]], d[top]))]
        return [
            Hit(
                int(a["case_ids"][idx[i]]),
                float(d[i]),
                a["types"][idx[i]] or None,
                int(a["patient_ids"][idx[i]]) if a["patient_ids"][idx[i]] >= 0 else None,
            )
            for i in top
        ]


class PgvectorIndex:
    """HNSW (``vector_l2_ops``, m=32, ef_construction=128) over base cases: ``CaseFeatures.Meta.indexes``."""

    name = "pgvector"
    ef_search = 100
    # Tests and benchmarks set this so that small tables still go through the HNSW index.
    force_index = False

    def search(
        self,
        vector,
        n: int,
        *,
        tumour_type: str | None = None,
        exclude_patient_ids=(),
        exclude_case_ids=(),
        exact: bool = False,
    ) -> list[Hit]:
        """``exact``: a sequential scan instead of the graph walk, for filters whose matches may lie far
        from the query (see docs/benchmarks.md, "Search at scale")."""
        rows = CaseFeatures.objects.filter(in_base=True, combined__isnull=False)
        if tumour_type:
            rows = rows.filter(tumour_type=tumour_type)
        if len(exclude_patient_ids):  # a case without a patient is never excluded
            rows = rows.exclude(patient_id__in=[int(p) for p in exclude_patient_ids])
        if len(exclude_case_ids):
            rows = rows.exclude(case_id__in=[int(c) for c in exclude_case_ids])
        query = np.asarray(vector, dtype=np.float32).ravel()
        nearest = (
            rows.annotate(distance=L2Distance("combined", query))
            .order_by("distance")
            .values_list("case_id", "distance", "tumour_type", "patient_id")[: int(n)]
        )
        # Session settings for this query only (SET LOCAL ends with the transaction).
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                cursor.execute(f"SET LOCAL hnsw.ef_search = {max(int(self.ef_search), int(n))}")
                if exact:
                    cursor.execute("SET LOCAL enable_indexscan = off")
                elif self.force_index:
                    cursor.execute("SET LOCAL enable_seqscan = off")
            found = list(nearest)
        hits = [Hit(int(r[0]), float(r[1]), r[2], r[3]) for r in found]
        hits.sort(key=lambda h: (h.distance, h.case_id))
        return hits


def get_index(name: str | None = None):
    """TUMORSITE_VECTOR_INDEX ("numpy" or "pgvector"); by default pgvector on PostgreSQL, numpy elsewhere."""
    name = (
        name
        or getattr(settings, "TUMORSITE_VECTOR_INDEX", "")
        or ("pgvector" if connection.vendor == "postgresql" else "numpy")
    )
    if name == "pgvector":
        if connection.vendor != "postgresql":
            raise ValueError("the pgvector index needs PostgreSQL: set DATABASE_URL=postgres://...")
        return PgvectorIndex()
    if name == "numpy":
        return NumpyIndex()
    raise ValueError(f"unknown vector index {name!r}: use numpy or pgvector")
