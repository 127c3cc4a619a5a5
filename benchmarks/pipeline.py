"""Upload to mask to similar cases, end to end through the API, as a clinician's client sees it.

For each mode it sets up a throw-away deployment, uploads real slices of the dataset (PNG, token auth,
one case per slice) and times:

- *warm*: one upload at a time, after a warm-up upload; from the POST to the primary model's mask being
  ``done`` (``mask``) and to ``GET /api/cases/{id}/similar/`` answering ``status: ready`` (``similar``);
  p50 and p90 over ``--warm`` uploads;
- *concurrent*: ``--concurrent`` uploads sent at once; slices per minute from the first request to the
  last case whose similar cases are ready (0 lost: every upload must answer 201 and end ready). Every
  half second, one request lists the cases, and the similar cases are asked for of those whose runs
  have finished.

Modes (``--modes``):

- ``embedded``: one web process on SQLite (gunicorn, 1 worker, 8 threads), the tasks on its own thread;
- ``production``: gunicorn (3 workers) with ``tumorsite.settings.production``, a fresh PostgreSQL database
  (``tumorsite_bench_<pid>`` on ``--postgres``, dropped at the end), a redis-server of its own on a free
  port and ``--workers`` Celery workers (``--pool=solo``). The machine's own Redis is never touched.

Each deployment gets a small case base first (``import_cases --limit``, then ``demo_setup``, which syncs
the models and builds the case base); the uploaded slices are other rows of ``cases.csv``, never in it.

    python benchmarks/pipeline.py [--data DIR] [--modes embedded production] [--warm 20] [--concurrent 50]
                                  [--json OUT]

Prints a table; nothing here is a test. ``--json`` also writes the machine (CPU model, bf16 units, cores)
and the load average before and after each mode: the figures belong to the machine and to what else ran
(``--append`` adds the run to those already in the file, e.g. one made before a change, with ``--label``).
``TUMORSITE_INFERENCE_PRECISION`` and ``TUMORSITE_INFERENCE_RUNTIME`` in the environment reach the workers
(and are recorded, with the OpenVINO version installed, if any).
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.segmentation import machine  # noqa: E402 (the repository is on sys.path now)

PASSWORD = "bench-" + secrets.token_urlsafe(12)
USERNAME = "demo-clinician"  # manage.py demo_setup's clinician
POLL_S = 0.05


def installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, *, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(every)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# === Deployments ===
class Deployment:
    """Processes started here and stopped at the end (by their own process group, never by name)."""

    def __init__(self, mode: str, directory: Path, data: Path, args):
        self.mode, self.directory, self.data, self.args = mode, directory, data, args
        self.processes: list[subprocess.Popen] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
        self.env.update(
            TUMORSITE_VAR_DIR=str(directory / "var"),
            TUMORSITE_DATA=str(data),
            TUMORSITE_UPLOAD_RATE="100000/hour",
            TUMORSITE_TOKEN_RATE="1000/minute",
            DEMO_PASSWORD=PASSWORD,
            TF_CPP_MIN_LOG_LEVEL="3",
            PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE="tumorsite.settings.base",
            LOG_LEVEL="WARNING",
        )

    def manage(self, *command: str) -> None:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *command],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode:
            raise SystemExit(f"manage.py {' '.join(command)} failed:\n{done.stderr[-3000:]}")

    def spawn(self, name: str, command: list[str], env: dict) -> subprocess.Popen:
        log = (self.directory / f"{name}.log").open("wb")
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def prepare(self) -> None:
        """Migrate, a small case base (its slices never uploaded below), the demo accounts and models."""
        self.manage("migrate", "-v0")
        self.manage("import_cases", str(self.data), "--limit", str(self.args.case_base), "--no-progress")
        self.manage("demo_setup")  # accounts, then sync_models and build_case_base

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, 15)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=10)


@contextmanager
def embedded(directory: Path, data: Path, args):
    d = Deployment("embedded", directory, data, args)
    try:
        d.prepare()
        # One process (its task thread is the embedded queue), request threads as runserver's; gunicorn
        # rather than runserver, whose listen backlog of 5 resets a burst of 50 connections.
        gunicorn = [sys.executable, "-m", "gunicorn", "tumorsite.wsgi:application", "--workers", "1",
                    "--threads", "8", "--bind", f"127.0.0.1:{d.port}", "--timeout", "120"]  # fmt: skip
        d.spawn("web", gunicorn, d.env)
        yield d
    finally:
        d.stop()


@contextmanager
def production(directory: Path, data: Path, args):
    d = Deployment("production", directory, data, args)
    database = f"tumorsite_bench_{os.getpid()}"
    admin = f"{args.postgres}/postgres"
    with ExitStack() as stack:
        stack.callback(d.stop)
        import psycopg  # noqa: PLC0415 (only the production mode needs PostgreSQL)

        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')

        def drop():
            d.stop()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

        stack.callback(drop)
        redis_port = free_port()
        d.spawn(
            "redis",
            [args.redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(directory)],
            d.env,
        )  # fmt: skip
        d.env.update(
            DATABASE_URL=f"{args.postgres}/{database}",
            CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
            SECRET_KEY=secrets.token_urlsafe(50),
            TUMORSITE_PSEUDONYM_KEY=secrets.token_urlsafe(48),
        )
        d.prepare()
        web_env = {
            **d.env,
            "DJANGO_SETTINGS_MODULE": "tumorsite.settings.production",
            "SECURE_SSL_REDIRECT": "false",
            "TUMORSITE_TRUSTED_PROXIES": "0",
        }
        gunicorn = [sys.executable, "-m", "gunicorn", "tumorsite.wsgi:application", "--timeout", "120",
                    "--bind", f"127.0.0.1:{d.port}", "--workers", str(args.web_workers)]  # fmt: skip
        d.spawn("web", gunicorn, web_env)
        for n in range(args.workers):
            worker = [sys.executable, "-m", "celery", "-A", "tumorsite", "worker", "--pool=solo",
                      "--loglevel=WARNING", "-n", f"bench{n}-{os.getpid()}@%h"]  # fmt: skip
            if n == 0:
                worker += ["-B", "--schedule", str(directory / "beat-schedule")]
            d.spawn(
                f"worker{n}", worker, {**d.env, "DJANGO_SETTINGS_MODULE": "tumorsite.settings.production"}
            )
        yield d


# === The client ===
class Clinician:
    def __init__(self, url: str):
        self.url = url
        self.session = requests.Session()
        self.headers: dict[str, str] = {}

    def sign_in(self) -> None:
        response = requests.post(
            f"{self.url}/api/auth/token/", data={"username": USERNAME, "password": PASSWORD}, timeout=30
        )
        response.raise_for_status()
        self.headers = {"Authorization": f"Token {response.json()['token']}"}

    def upload(self, path: Path, session: requests.Session | None = None) -> int:
        with path.open("rb") as fh:
            response = (session or self.session).post(
                f"{self.url}/api/cases/",
                files={"image": (path.name, fh, "image/png")},
                data={"patient": f"BENCH-{path.stem}"},
                headers=self.headers,
                timeout=300,
            )
        if response.status_code != 201:
            raise SystemExit(f"upload of {path.name}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()["id"]

    def mask_done(self, case_id: int) -> bool:
        runs = self._get(f"/api/cases/{case_id}/")["segmentations"]
        primary = [r for r in runs if r["is_primary"]]
        if any(r["status"] == "failed" for r in primary):
            raise SystemExit(f"case {case_id}: the primary segmentation failed: {primary}")
        return bool(primary) and all(r["status"] == "done" for r in primary)

    def finished(self, case_ids: set[int]) -> set[int]:
        """Of ``case_ids``, those whose runs have all finished: one request for the newest 100 cases (a
        request per case would load the server the benchmark measures)."""
        listed = {c["id"]: c["status"] for c in self._get("/api/cases/?page_size=100")["results"]}
        return {i for i in case_ids if listed.get(i, "done") == "done"}

    def similar_ready(self, case_id: int) -> bool:
        return self._get(f"/api/cases/{case_id}/similar/")["status"] == "ready"

    def _get(self, path: str) -> dict:
        response = self.session.get(f"{self.url}{path}", headers=self.headers, timeout=60)
        response.raise_for_status()
        return response.json()


def server_up(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz/live", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def slices_to_upload(data: Path, skip: int, n: int) -> list[Path]:
    """``n`` slices from the end of cases.csv: the case base is imported from its start (``skip`` rows)."""
    with (data / "cases.csv").open() as fh:
        ids = [row["id"] for row in csv.DictReader(fh)]
    if len(ids) < skip + n:
        raise SystemExit(f"{data}/cases.csv has {len(ids)} rows; {skip} for the base + {n} to upload needed.")
    return [data / "images" / f"{i}.png" for i in ids[-n:]]


def measure(d: Deployment, slices: list[Path], args) -> dict:
    client = Clinician(d.url)
    wait_for(lambda: server_up(d.url), timeout=120, what=f"the {d.mode} web server answering")
    client.sign_in()
    warmup, warm, concurrent = slices[:1], slices[1 : 1 + args.warm], slices[1 + args.warm :]

    def one(path: Path) -> tuple[float, float]:
        started = time.perf_counter()
        case_id = client.upload(path)
        wait_for(lambda: client.mask_done(case_id), timeout=600, every=POLL_S, what=f"case {case_id}'s mask")
        mask = time.perf_counter() - started
        wait_for(lambda: client.similar_ready(case_id), timeout=600, every=POLL_S, what="similar cases")
        return mask, time.perf_counter() - started

    one(warmup[0])  # loads TensorFlow and the models in the worker
    times = np.array([one(p) for p in warm])
    print(f"{d.mode}: warm uploads done", file=sys.stderr, flush=True)

    ids: list[int | None] = [None] * len(concurrent)
    barrier = threading.Barrier(len(concurrent))

    errors: list[str] = []

    def send(i: int, path: Path) -> None:
        session = requests.Session()
        barrier.wait()
        try:
            ids[i] = client.upload(path, session)
        except (requests.RequestException, SystemExit) as exc:
            errors.append(f"{path.name}: {exc}")

    threads = [threading.Thread(target=send, args=(i, p)) for i, p in enumerate(concurrent)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{len(errors)} of {len(ids)} concurrent uploads failed, e.g. {errors[0]}")
    uploaded = time.perf_counter() - started
    pending = set(ids)
    deadline = time.monotonic() + 3600
    while pending:
        pending -= {i for i in client.finished(pending) if client.similar_ready(i)}
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(pending)} concurrent cases never got their similar cases")
        time.sleep(0.5 if pending else 0)
    elapsed = time.perf_counter() - started
    return {
        "warm_n": len(warm),
        "warm_mask_p50_s": round(float(np.median(times[:, 0])), 3),
        "warm_similar_p50_s": round(float(np.median(times[:, 1])), 3),
        "warm_similar_p90_s": round(float(np.percentile(times[:, 1], 90)), 3),
        "concurrent_n": len(concurrent),
        "concurrent_uploads_s": round(uploaded, 2),
        "concurrent_elapsed_s": round(elapsed, 2),
        "slices_per_minute": round(len(concurrent) / elapsed * 60.0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        default=os.environ.get("TUMORSITE_DATA", str(ROOT.parent / "shared" / "data" / "figshare")),
        help="the dataset in the PNG layout (cases.csv, images/, masks/); default $TUMORSITE_DATA",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["embedded", "production"],
        choices=["embedded", "production"],
        help="which deployments to measure (default both)",
    )
    parser.add_argument(
        "--warm", type=int, default=20, help="timed single uploads after a warm-up (default 20)"
    )
    parser.add_argument("--concurrent", type=int, default=50, help="uploads sent at once (default 50)")
    parser.add_argument("--case-base", type=int, default=300, help="rows of cases.csv imported as the base")
    parser.add_argument("--workers", type=int, default=1, help="Celery workers in production (default 1)")
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn workers (default 3, as compose)")
    parser.add_argument(
        "--postgres",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server (with pgvector) where a throw-away database is made and dropped",
    )
    parser.add_argument(
        "--redis-server",
        default=shutil.which("redis-server") or "/usr/bin/redis-server",
        help="the redis-server binary started on a free port",
    )
    parser.add_argument("--label", default="", help="a note stored with the rows (e.g. 'before')")
    parser.add_argument("--json", help="also write the rows and the machine to this JSON file")
    parser.add_argument(
        "--append", action="store_true", help="keep the runs already in --json (e.g. a run before a change)"
    )
    args = parser.parse_args()
    # A SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: the servers stop and the database is dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    data = Path(args.data)
    if not (data / "cases.csv").is_file():
        raise SystemExit(f"No dataset at {data} (cases.csv, images/): pass --data or set TUMORSITE_DATA.")
    slices = slices_to_upload(data, args.case_base, 1 + args.warm + args.concurrent)

    rows = []
    for mode in args.modes:
        deploy = embedded if mode == "embedded" else production
        with tempfile.TemporaryDirectory(prefix=f"tumorsite-pipeline-{mode}-") as tmp:
            before = load_average()
            try:
                with deploy(Path(tmp), data, args) as d:
                    result = measure(d, slices, args)
            except BaseException:
                for name in ("web", "worker0", "redis"):
                    text = Deployment(mode, Path(tmp), data, args).log(name)
                    if text:
                        print(f"--- {mode} {name}.log ---\n{text[-3000:]}", file=sys.stderr)
                raise
            rows.append({"mode": mode, **result, "load_before": before, "load_after": load_average()})
            print(f"{mode}: {result}", file=sys.stderr, flush=True)

    header = (
        f"{'mode':11} {'mask p50 s':>10} {'similar p50 s':>13} {'p90 s':>6} "
        f"{'concurrent':>10} {'elapsed s':>9} {'slices/min':>10} {'load before':>17}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['mode']:11} {r['warm_mask_p50_s']:>10.2f} {r['warm_similar_p50_s']:>13.2f} "
            f"{r['warm_similar_p90_s']:>6.2f} {r['concurrent_n']:>10} {r['concurrent_elapsed_s']:>9.1f} "
            f"{r['slices_per_minute']:>10.1f} {' '.join(map(str, r['load_before'])):>17}"
        )
    if args.json:
        run = {
            "machine": machine(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "label": args.label,
            "settings": {
                "case_base": args.case_base,
                "workers": args.workers,
                "web_workers": args.web_workers,
                "concurrent_polling": "case list",
                "precision": os.environ.get("TUMORSITE_INFERENCE_PRECISION", ""),
                "runtime": os.environ.get("TUMORSITE_INFERENCE_RUNTIME", "auto"),
                "openvino": installed_version("openvino"),
            },
            "rows": rows,
        }
        out = Path(args.json)
        earlier = json.loads(out.read_text()) if args.append and out.is_file() else {"runs": []}
        runs = earlier.get("runs", [earlier])  # a file of one run, as an older version wrote it
        out.write_text(json.dumps({"runs": [*runs, run]}, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
