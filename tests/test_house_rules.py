"""Habits that ruff cannot hold by itself.

ruff's PLC0415 flags every import inside a function; the few that stay (TensorFlow loaded lazily so the web
process never imports it, Django's ``AppConfig.ready``) are marked ``# noqa: PLC0415 (why)``. A bare noqa
would silence the rule without saying why, so this test refuses one.
"""

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The codes after "noqa:" (PLC0415 among them), then what follows them on the line.
NOQA = re.compile(r"#\s*noqa:\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)(?P<rest>.*)$")


def _tracked_python_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    # This file's own examples of bare and explained noqa comments are not code.
    return [REPO_ROOT / name for name in out.split() if REPO_ROOT / name != Path(__file__)]


def unexplained_lazy_imports(paths) -> list[str]:
    """``file:line`` of each ``noqa: PLC0415`` with no reason in brackets after it."""
    found = []
    for path in paths:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = NOQA.search(line)
            if match and "PLC0415" in match["codes"] and not re.match(r"\s*\(\S.*\)", match["rest"]):
                found.append(f"{path}:{number}")
    return found


def test_every_import_left_inside_a_function_says_why():
    files = _tracked_python_files()
    assert len(files) > 100  # the whole tree was read, not an empty listing
    assert unexplained_lazy_imports(files) == []


def test_a_bare_noqa_for_a_lazy_import_is_refused(tmp_path):
    bare = tmp_path / "bare.py"
    bare.write_text("def f():\n    import json  # noqa: PLC0415\n")
    explained = tmp_path / "explained.py"
    explained.write_text(
        "def f():\n    import json  # noqa: PLC0415 (only this command needs it)\n"
        "def g():\n    import csv  # noqa: F401, PLC0415 (registers a dialect)\n"
        "def h():\n    import os  # noqa: PLC0415, F401\n"
    )
    assert unexplained_lazy_imports([bare, explained]) == [f"{bare}:2", f"{explained}:6"]
