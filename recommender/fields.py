"""The vector column and its HNSW index, through pgvector's Django support, with a SQLite fallback.

On PostgreSQL both are pgvector's: ``VectorField`` is a ``vector(n)`` column (its text form on the
wire, so no adapter has to be registered on the connection) and ``HnswIndex`` an HNSW index, declared
in the model's Meta. SQLite has neither a vector type nor an HNSW index: there the field stores
little-endian float32 bytes and the index creates nothing, since ``recommender.index.NumpyIndex``
searches the whole base exactly. One field class for both backends keeps one set of migrations.
"""

from __future__ import annotations

import numpy as np
import pgvector.django
from django.core import checks
from django.db.backends.ddl_references import Statement
from pgvector import Vector


def to_pgvector_literal(values) -> str:
    """pgvector's text form of ``values`` as float32, e.g. ``[1.0,2.5]``, for a hand-written query."""
    return Vector(np.asarray(values, dtype=np.float32).ravel()).to_text()


def parse_vector(value) -> np.ndarray | None:
    """A float32 array from what the database or a caller gives: bytes (SQLite), pgvector's text form
    (PostgreSQL), a ``Vector``, an array or a list."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return value.astype(np.float32, copy=False)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(value), dtype="<f4").copy()
    if isinstance(value, str):
        return Vector.from_text(value).to_numpy().copy()
    if isinstance(value, Vector):  # pgvector's psycopg adapter, when some other code registered it
        return value.to_numpy().copy()
    return np.asarray(value, dtype=np.float32)


class VectorField(pgvector.django.VectorField):
    """pgvector's ``VectorField`` on PostgreSQL; a BLOB of float32 bytes elsewhere. Values are
    float32 numpy arrays on both."""

    description = "A vector of float32 (pgvector on PostgreSQL)"

    def check(self, **kwargs):
        errors = super().check(**kwargs)
        if self.dimensions is not None and self.dimensions < 1:
            errors.append(checks.Error("dimensions must be a positive integer", obj=self))
        return errors

    def db_type(self, connection):
        return super().db_type(connection) if connection.vendor == "postgresql" else "blob"

    def from_db_value(self, value, expression, connection):
        return parse_vector(value)

    def to_python(self, value):
        return parse_vector(value)

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        vec = np.asarray(value, dtype=np.float32).ravel()
        if self.dimensions is not None and vec.size != self.dimensions:
            raise ValueError(f"expected a vector of {self.dimensions} values, got {vec.size}")
        if connection.vendor == "postgresql":
            return self.get_prep_value(vec)
        return vec.astype("<f4").tobytes()

    def value_to_string(self, obj):
        value = self.value_from_object(obj)
        return None if value is None else to_pgvector_literal(value)


class HnswIndex(pgvector.django.HnswIndex):
    """pgvector's ``HnswIndex``, built on PostgreSQL only: on another database its SQL is a comment,
    so the migrations that add or drop it, and SQLite's table rebuilds, leave nothing behind."""

    # PostgreSQL's identifier limit (NAMEDATALEN - 1): Django's default 30 characters is for
    # portability, which an index of one database's own does not need.
    max_name_length = 63

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if schema_editor.connection.vendor != "postgresql":
            return _skipped(self, schema_editor)
        return super().create_sql(model, schema_editor, using=using, **kwargs)

    def remove_sql(self, model, schema_editor, **kwargs):
        if schema_editor.connection.vendor != "postgresql":
            return _skipped(self, schema_editor)
        return super().remove_sql(model, schema_editor, **kwargs)


def _skipped(index: HnswIndex, schema_editor) -> Statement:
    return Statement(
        "-- %(name)s: HNSW index skipped on %(vendor)s (PostgreSQL only)",
        name=index.name,
        vendor=schema_editor.connection.vendor,
    )
