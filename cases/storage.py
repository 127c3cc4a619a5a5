"""Media files kept consistent with the rows that name them (issue #31, item 3).

A file is stored before the row that names it is saved (the row holds the stored name), so a transaction
that rolls back after the store would leave a file that nothing refers to. The rule, for every write:

- store through ``file_save`` (or hand a name stored some other way, e.g. by a ``FileField``'s ``save``,
  to ``delete_on_rollback``) inside ``atomic_with_files()``: the files stored in that block are deleted
  again if it does not commit (an exception, ``set_rollback``, a failed COMMIT);
- blocks nest: an inner block that commits hands its files to the enclosing one, which may still roll
  back. So the outermost transaction around a store must be an ``atomic_with_files``: a plain
  ``transaction.atomic`` around it rolls back without telling anyone (Django has an ``on_commit`` hook
  and no ``on_rollback``);
- outside any block the caller owns what it stored (the bulk imports store a batch first and save it
  with ``cases_save``, which puts the batch's files in its own block).

The other half is the check, ``storage_consistency`` (``manage.py storage_check``): files in storage that
no row names, and rows whose file is gone, for whatever slipped through (a killed process, a hand edit).
It knows the file fields from Django's model registry, so it covers every app without importing any.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.apps import apps
from django.core.files.base import File
from django.core.files.storage import Storage, default_storage
from django.db import DEFAULT_DB_ALIAS, models, transaction
from django.utils import timezone

# === Deleting what a rolled-back transaction stored ===

_blocks = threading.local()  # per thread: database alias -> the open blocks' stored files, innermost last


def _open_blocks(using: str | None) -> list[list[tuple[Storage, str]]]:
    per_alias = _blocks.__dict__.setdefault("per_alias", {})
    return per_alias.setdefault(using or DEFAULT_DB_ALIAS, [])


@contextmanager
def atomic_with_files(*, using: str | None = None) -> Iterator[None]:
    """``transaction.atomic`` that deletes the files stored inside it (``file_save``,
    ``delete_on_rollback``) unless it commits; when nested, the enclosing block decides."""
    blocks = _open_blocks(using)
    stored: list[tuple[Storage, str]] = []
    blocks.append(stored)
    committed = False
    try:
        with transaction.atomic(using=using):
            yield
            rolling_back = transaction.get_rollback(using=using)
        committed = not rolling_back  # not reached when the COMMIT itself fails
    finally:
        blocks.pop()
        if not committed:
            _delete(stored)
        elif blocks:
            blocks[-1].extend(stored)


def file_save(name: str, content: File, *, storage: Storage | None = None, using: str | None = None) -> str:
    """Store ``content`` under ``name`` (or the free name the storage picks) and return the stored name;
    inside ``atomic_with_files`` it is deleted again if that block does not commit."""
    storage = storage or default_storage
    stored = storage.save(name, content)
    delete_on_rollback(stored, storage=storage, using=using)
    return stored


def delete_on_rollback(*names: str, storage: Storage | None = None, using: str | None = None) -> None:
    """Delete these stored files if the enclosing ``atomic_with_files`` does not commit. Outside one this
    does nothing: the caller owns the files."""
    blocks = _open_blocks(using)
    if blocks:
        blocks[-1].extend((storage or default_storage, name) for name in names if name)


def files_delete(names: Iterable[str], *, storage: Storage | None = None) -> None:
    """Delete stored files that no row names (a missing one is not an error)."""
    _delete([(storage or default_storage, name) for name in names if name])


def _delete(stored: Iterable[tuple[Storage, str]]) -> None:
    for storage, name in stored:
        storage.delete(name)


# === The check: orphans both ways ===


@dataclass(frozen=True)
class FileReference:
    """A row that names a stored file."""

    model: str  # app_label.ModelName
    field: str
    pk: object
    name: str

    def as_dict(self) -> dict:
        return {"model": self.model, "field": self.field, "pk": self.pk, "name": self.name}


@dataclass
class StorageReport:
    """What ``storage_consistency`` found. ``orphan_files`` are older than the grace period; younger
    unreferenced files (``recent_unreferenced``) may belong to a write that has not committed yet."""

    folders: list[str]
    files: int = 0
    references: int = 0
    orphan_files: list[str] = field(default_factory=list)
    recent_unreferenced: list[str] = field(default_factory=list)
    missing_files: list[FileReference] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return len(self.orphan_files) + len(self.missing_files)

    def as_dict(self) -> dict:
        return {
            "folders": self.folders,
            "files": self.files,
            "references": self.references,
            "orphan_files": self.orphan_files,
            "recent_unreferenced": self.recent_unreferenced,
            "missing_files": [ref.as_dict() for ref in self.missing_files],
            "deleted": self.deleted,
        }


def file_fields() -> list[models.FileField]:
    """Every concrete file field of every installed model stored in the default storage."""
    return [
        f
        for model in apps.get_models()
        for f in model._meta.get_fields()
        if isinstance(f, models.FileField) and f.concrete and f.storage is default_storage
    ]


def _folder(f: models.FileField) -> str | None:
    """The fixed folder of a field's ``upload_to`` ("masks/%Y/%m/" -> "masks"); None if it has none."""
    if callable(f.upload_to):
        return None
    fixed = str(f.upload_to).split("%", 1)[0]
    folder = fixed.rsplit("/", 1)[0].strip("/") if "/" in fixed else ""
    return folder or None


def _references(
    fields: list[models.FileField], names: Iterable[str] | None = None
) -> Iterator[FileReference]:
    for f in fields:
        rows = f.model._default_manager.exclude(**{f.attname: ""}).exclude(**{f"{f.attname}__isnull": True})
        if names is not None:
            rows = rows.filter(**{f"{f.attname}__in": list(names)})
        label = f"{f.model._meta.app_label}.{f.model.__name__}"
        for pk, name in rows.values_list("pk", f.attname).iterator(chunk_size=2000):
            yield FileReference(label, f.name, pk, name)


def _walk(storage: Storage, folder: str) -> Iterator[str]:
    try:
        directories, files = storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in files:
        yield f"{folder}/{name}"
    for directory in directories:
        yield from _walk(storage, f"{folder}/{directory}")


def storage_consistency(
    *, min_age: timedelta = timedelta(hours=1), delete_orphans: bool = False
) -> StorageReport:
    """Compare the stored files under the file fields' folders with the rows that name them.

    The rows are read before the files are listed: a row's file is stored before the row commits, so a
    file missing from the listing is really missing, while a file stored since may not have its row yet
    (those are ``recent_unreferenced`` while younger than ``min_age``). ``delete_orphans`` deletes the
    orphans, each only after checking again that no row names it.
    """
    fields = file_fields()
    storage = default_storage
    referenced: dict[str, list[FileReference]] = {}
    for ref in _references(fields):
        referenced.setdefault(ref.name, []).append(ref)
    folders = sorted({folder for f in fields if (folder := _folder(f))})
    listed = {name for folder in folders for name in _walk(storage, folder)}
    report = StorageReport(folders=folders, files=len(listed), references=len(referenced))
    for name, refs in sorted(referenced.items()):
        in_listed_folder = any(name.startswith(f"{folder}/") for folder in folders)
        if (name not in listed) if in_listed_folder else not storage.exists(name):
            report.missing_files.extend(refs)
    cutoff = timezone.now() - min_age
    for name in sorted(listed - referenced.keys()):
        if _modified(storage, name) > cutoff:
            report.recent_unreferenced.append(name)
        else:
            report.orphan_files.append(name)
    if delete_orphans:
        for start in range(0, len(report.orphan_files), 500):
            batch = report.orphan_files[start : start + 500]
            named_now = {ref.name for ref in _references(fields, names=batch)}
            unnamed = [name for name in batch if name not in named_now]
            files_delete(unnamed, storage=storage)
            report.deleted.extend(unnamed)
    return report


def _modified(storage: Storage, name: str) -> datetime:
    try:
        return storage.get_modified_time(name)
    except (NotImplementedError, FileNotFoundError):
        return timezone.now()  # unknown: treated as recent, so never deleted
