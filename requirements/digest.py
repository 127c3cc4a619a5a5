"""Ties the lock files to the dependency lists of pyproject.toml they were compiled from.

``make lock`` compiles the locks, then stamps each with a digest of pyproject's ``requires-python``,
``dependencies`` and ``optional-dependencies``. ``--check`` (run by CI) fails when a lock's stamp
differs from the digest of today's pyproject.toml: a dependency added, dropped or re-ranged without
``make lock``. Standard library only, so it runs before anything is installed.
"""

import argparse
import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = tuple(ROOT / "requirements" / name for name in ("base.txt", "web.txt", "dev.txt", "gpu.txt"))
STAMP = "# pyproject.toml dependencies sha256: "


def declared_digest(pyproject: Path = ROOT / "pyproject.toml") -> str:
    project = tomllib.loads(pyproject.read_text())["project"]
    declared = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }
    return hashlib.sha256(json.dumps(declared, sort_keys=True).encode()).hexdigest()


def stamp(lock: Path, digest: str) -> None:
    """Writes the stamp at the end of pip-compile's header comment, replacing an older one."""
    lines = [line for line in lock.read_text().splitlines(keepends=True) if not line.startswith(STAMP)]
    header_end = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    lines.insert(header_end, f"{STAMP}{digest}\n")
    lock.write_text("".join(lines))


def stamped_digest(lock: Path) -> str | None:
    for line in lock.read_text().splitlines():
        if line.startswith(STAMP):
            return line.removeprefix(STAMP).strip()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--stamp", action="store_true", help="write the digest into the lock files")
    action.add_argument(
        "--check", action="store_true", help="exit 1 unless every lock file carries today's digest"
    )
    options = parser.parse_args(argv)
    digest = declared_digest()
    if options.stamp:
        for lock in LOCKS:
            stamp(lock, digest)
        return 0
    stale = [lock for lock in LOCKS if not lock.exists() or stamped_digest(lock) != digest]
    for lock in stale:
        print(
            f"{lock.relative_to(ROOT)} was not compiled from today's pyproject.toml: run `make lock`",
            file=sys.stderr,
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
