"""How long import_cases takes on the shared dataset (target: 2426 cases in under 2 minutes).

Runs in a throw-away TUMORSITE_VAR_DIR on the embedded SQLite database:
    python benchmarks/import_cases.py [DATA_DIR]
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 120


def main() -> int:
    data = Path(
        sys.argv[1]
        if len(sys.argv) > 1
        else os.environ.get("TUMORSITE_DATA", REPO.parent / "shared/data/figshare")
    )
    if not (data / "cases.csv").is_file():
        print(f"skipped: no dataset at {data}")
        return 0
    with tempfile.TemporaryDirectory(prefix="tumorsite-bench-") as var:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
        env.update(TUMORSITE_VAR_DIR=var, DJANGO_SETTINGS_MODULE="tumorsite.settings.base")
        manage = [sys.executable, str(REPO / "manage.py")]
        subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
        timings = {}
        for run in ("first", "again"):
            report = Path(var) / f"{run}.json"
            started = time.perf_counter()
            subprocess.run(
                [*manage, "import_cases", str(data), "--no-progress", "--json", str(report)],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            timings[run] = (time.perf_counter() - started, json.loads(report.read_text()))
    (first_s, first), (again_s, again) = timings["first"], timings["again"]
    print(
        f"import_cases {data}: imported {first['imported']} in {first_s:.1f} s "
        f"({first['imported'] / first_s:.0f} cases/s, target < {TARGET_S} s); "
        f"re-run skipped {again['skipped']} in {again_s:.1f} s"
    )
    return 0 if first_s < TARGET_S and not first["failed"] and again["imported"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
