"""A float vector column: pgvector ``vector(n)`` on PostgreSQL, little-endian float32 bytes elsewhere.

One field class for both backends keeps one set of migrations: ``db_type`` asks the connection which
database it is. On PostgreSQL the value travels as pgvector's text form ``[1,2,3]``, so no adapter
has to be registered on the connection.
"""

from __future__ import annotations

import numpy as np
from django.core import checks
from django.db import models


def to_pgvector_literal(values) -> str:
    return "[" + ",".join(repr(float(v)) for v in np.asarray(values, dtype=np.float32).ravel()) + "]"


def parse_vector(value) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return value.astype(np.float32, copy=False)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(value), dtype="<f4").copy()
    if isinstance(value, str):
        text = value.strip().strip("[]")
        return np.array([float(x) for x in text.split(",")] if text else [], dtype=np.float32)
    # pgvector's own psycopg adapter, when some other code registered it, returns numpy already;
    # lists come from Python callers.
    return np.asarray(value, dtype=np.float32)


class VectorField(models.Field):
    description = "A vector of float32 (pgvector on PostgreSQL)"
    empty_strings_allowed = False

    def __init__(self, *args, dimensions: int | None = None, **kwargs):
        self.dimensions = dimensions
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if self.dimensions is not None:
            kwargs["dimensions"] = self.dimensions
        return name, path, args, kwargs

    def check(self, **kwargs):
        errors = super().check(**kwargs)
        if self.dimensions is not None and self.dimensions < 1:
            errors.append(checks.Error("dimensions must be a positive integer", obj=self))
        return errors

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return f"vector({self.dimensions})" if self.dimensions else "vector"
        return "blob"

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
            return to_pgvector_literal(vec)
        return vec.astype("<f4").tobytes()

    def value_to_string(self, obj):
        value = self.value_from_object(obj)
        return None if value is None else to_pgvector_literal(value)
