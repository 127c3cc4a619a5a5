"""Typed access to the process environment.

Every setting that comes from the environment is read through these helpers, so a bad value stops
the process at start-up with a message naming the variable instead of failing later somewhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote, urlsplit


class EnvError(ValueError):
    """A variable in the environment has a value we cannot use."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env(name: str, default: str = "", *, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get(name, default)


def envbool(name: str, default: bool = False, *, environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    if name not in environ:
        return default
    value = environ[name].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise EnvError(f"{name}={environ[name]!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off")


def _envnumber(name: str, default, parse, what: str, environ: Mapping[str, str] | None):
    environ = os.environ if environ is None else environ
    if name not in environ or environ[name].strip() == "":
        return default
    try:
        return parse(environ[name].strip())
    except ValueError:
        raise EnvError(f"{name}={environ[name]!r} is not {what}") from None


def envint(name: str, default: int, *, environ: Mapping[str, str] | None = None) -> int:
    return _envnumber(name, default, int, "an integer", environ)


def envfloat(name: str, default: float, *, environ: Mapping[str, str] | None = None) -> float:
    return _envnumber(name, default, float, "a number", environ)


def envlist(name: str, default: list[str], *, environ: Mapping[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    if name not in environ:
        return list(default)
    return [item.strip() for item in environ[name].split(",") if item.strip()]


def parse_database_url(url: str) -> dict:
    """Turn ``sqlite:///path``, ``postgres://`` or ``postgresql://`` URLs into a DATABASES entry.

    ``sqlite:///relative.db`` is relative to the working directory, ``sqlite:////abs/path.db`` absolute.
    Query parameters of a postgres URL become connection OPTIONS (e.g. ``?sslmode=require``).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # urlsplit keeps the leading "/" of the path:
        # "sqlite:///x.db" -> "/x.db", "sqlite:////x.db" -> "//x.db".
        path = unquote(parts.path)
        name = path[1:] if path.startswith("/") else path
        if not name:
            raise EnvError(f"DATABASE_URL={url!r} has no file path: use sqlite:///path/to/db.sqlite3")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    if scheme in ("postgres", "postgresql", "pgsql"):
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise EnvError(
                f"DATABASE_URL={_redact(url)!r} has no database name: postgres://user:pass@host:5432/name"
            )
        try:
            port = parts.port
        except ValueError:
            raise EnvError(f"DATABASE_URL={_redact(url)!r} has a port that is not a number") from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            "OPTIONS": dict(parse_qsl(parts.query)),
        }
    raise EnvError(
        f"DATABASE_URL={_redact(url)!r} has an unsupported scheme {scheme!r}: use sqlite:/// or postgres://"
    )


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
