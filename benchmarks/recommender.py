"""Similar-case search at scale: pgvector HNSW against exact numpy, on synthetic vectors.

    DATABASE_URL=postgres://tumorsite:tumorsite@127.0.0.1:5432/tumorsite \
        .venv/bin/python benchmarks/recommender.py --sizes 10000 100000 [1000000] [--json out.json]

For each size N it makes N vectors of the real dimension (recommender.models.COMBINED_DIM), drawn from
a mixture of Gaussian clusters with a tumour type each (case vectors are clustered, not uniform),
loads them into a scratch table with COPY, builds the same HNSW index as the app
(vector_l2_ops, m=32, ef_construction=128 as migration 0004; ``--m`` / ``--ef-construction`` try
another graph, e.g. pgvector's defaults 16 / 64 of migration 0002), then times ``--queries``
nearest-10 queries:
- exact numpy (float32, brute force over all N; the embedded mode's search);
- pgvector HNSW without a filter, and with a tumour-type filter (iterative scan, relaxed order): the
  query's own type (what the app asks) and another type (a user's explicit filter), for each
  ``--ef-search``, fetching 4 x 10 rows and keeping the 10 nearest, as the app does;
- then the same filtered queries with one partial HNSW index per type (an alternative layout the app does
  not use), on a second
  copy of the table;
recall@10 is measured against the exact result of the same (filtered) query. The scratch tables are
dropped at the end. Prints a table; ``--json`` writes the figures.

A 1M build takes many minutes. To build while the machine is busy and time the queries when it is
quiet: ``--build-only`` (keeps the tables), later ``--reuse`` (same --sizes and --seed; the build
figures printed are the stored ones, with when they were measured).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql  # utility statements take no bound parameters: quote client-side

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TYPES = ("meningioma", "glioma", "pituitary")


def _dimension() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tumorsite.settings.base")
    import django  # noqa: PLC0415 (after DJANGO_SETTINGS_MODULE is set)

    django.setup()
    from recommender.models import COMBINED_DIM  # noqa: PLC0415 (models load after django.setup())

    return COMBINED_DIM


def synthetic(
    n: int, dim: int, rng: np.random.Generator, clusters: int = 60
) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(0, 1.0, size=(clusters, dim)).astype(np.float32)
    types = np.arange(clusters) % len(TYPES)
    which = rng.integers(0, clusters, size=n)
    vectors = centres[which] + rng.normal(0, 0.6, size=(n, dim)).astype(np.float32)
    return vectors.astype(np.float32), types[which]


def _literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6g}" for x in v) + "]"


def exact_top(vectors: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    d = ((vectors - q) ** 2).sum(axis=1)
    if mask is not None:
        d = np.where(mask, d, np.inf)
    top = np.argpartition(d, k)[:k]
    return top[np.argsort(d[top])]


def _prepared(cur, table: str, n: int, graph: dict) -> dict | None:
    """The build figures of a scratch table kept by ``--keep`` with all N rows and an index of the same
    ``graph`` (m, ef_construction), else None."""
    cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", [table])
    row = cur.fetchone()
    if not row or not row[0]:
        return None
    built = json.loads(row[0])
    same_graph = (built.get("m", 16), built.get("ef_construction", 64)) == (
        graph["m"],
        graph["ef_construction"],
    )
    return built if built.get("n") == n and same_graph else None


def _load_and_index(cur, table: str, vectors: np.ndarray, types: np.ndarray, args, *, partial: bool) -> dict:
    """COPY the vectors into a fresh table and build the HNSW index(es); returns load and build seconds.

    ``partial``: one HNSW index per tumour type (an alternative layout) instead of one over all rows. The two
    layouts live in separate tables so that the planner cannot mix them up when they are both kept.
    """
    n, dim = vectors.shape
    cur.execute(f"DROP TABLE IF EXISTS {table}")
    cur.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, tumour_type text, combined vector({dim}))")
    started = time.perf_counter()
    with cur.copy(f"COPY {table} (id, tumour_type, combined) FROM STDIN") as copy:
        for start in range(0, n, 20000):
            buf = io.StringIO()
            for i in range(start, min(n, start + 20000)):
                buf.write(f"{i}\t{TYPES[types[i]]}\t{_literal(vectors[i])}\n")
            copy.write(buf.getvalue())
    built = {
        "n": n,
        "load_s": round(time.perf_counter() - started, 1),
        "m": args.m,
        "ef_construction": args.ef_construction,
    }
    cur.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
    cur.execute(f"SET max_parallel_maintenance_workers = {args.build_workers}")
    started = time.perf_counter()
    for where in [f" WHERE tumour_type = '{t}'" for t in TYPES] if partial else [""]:
        cur.execute(
            f"CREATE INDEX ON {table} USING hnsw (combined vector_l2_ops) "
            f"WITH (m = {int(args.m)}, ef_construction = {int(args.ef_construction)}){where}"
        )
    built["build_s"] = round(time.perf_counter() - started, 1)
    built["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cur.execute(f"ANALYZE {table}")
    cur.execute(
        sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.Identifier(table), sql.Literal(json.dumps(built)))
    )
    return built


def _table(conn, table: str, vectors, types, args, *, partial: bool) -> dict:
    with conn.cursor() as cur:
        graph = {"m": args.m, "ef_construction": args.ef_construction}
        built = _prepared(cur, table, len(vectors), graph) if args.reuse else None
        if built is None:
            built = _load_and_index(cur, table, vectors, types, args, partial=partial)
        else:
            built = {**built, "reused": True}
    conn.commit()
    return built


def run_size(conn, n: int, dim: int, args, rng) -> dict:
    vectors, types = synthetic(n, dim, rng)
    table = f"bench_recommender_{n}_m{args.m}_efc{args.ef_construction}"
    built = _table(conn, table, vectors, types, args, partial=False)
    result: dict = {
        "n": n,
        "dim": dim,
        "m": args.m,
        "ef_construction": args.ef_construction,
        "load_s": built["load_s"],
        "index_build_s": built["build_s"],
        "index_reused_from": built["built_at"] if built.get("reused") else None,
    }
    if args.build_only:
        if args.partial:
            result["partial_index_build_s"] = _table(
                conn, f"{table}_by_type", vectors, types, args, partial=True
            )["build_s"]
        return result

    if args.prewarm:
        # Timing a warm server, not the first reads from disk: load the table and its indexes into
        # shared_buffers (which must be large enough to hold them; see docs/operations.md).
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            cur.execute("SELECT pg_prewarm(%s::regclass)", [table])
            cur.execute(
                "SELECT pg_prewarm(indexrelid::regclass) FROM pg_index WHERE indrelid = %s::regclass", [table]
            )
        conn.commit()

    # The app filters by the query's own (entered or suggested) type; a user may also ask for another type.
    source = rng.integers(0, n, size=args.queries)
    queries = vectors[source] + rng.normal(0, 0.3, size=(args.queries, dim)).astype(np.float32)
    own_types = types[source]
    other_types = (own_types + rng.integers(1, len(TYPES), size=args.queries)) % len(TYPES)
    k = 10

    # Exact numpy.
    times, truth = [], {"none": [], "own": [], "other": []}
    for q, own, other in zip(queries, own_types, other_types, strict=True):
        started = time.perf_counter()
        truth["none"].append(exact_top(vectors, q, k))
        times.append((time.perf_counter() - started) * 1000)
        truth["own"].append(exact_top(vectors, q, k, types == own))
        truth["other"].append(exact_top(vectors, q, k, types == other))
    result["numpy"] = {
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
        "recall_at_10": 1.0,
    }

    def measure(label: str, ef: int) -> None:
        for filt, wanted in (("none", None), ("own", own_types), ("other", other_types)):
            if label == "partial" and filt == "none":
                continue  # the per-type table has no index over all rows
            times, recalls = [], []
            with conn.cursor() as cur:
                cur.execute("SET hnsw.iterative_scan = relaxed_order")
                cur.execute(f"SET hnsw.ef_search = {ef}")
                for i, q in enumerate(queries):
                    lit = _literal(q)
                    where = f"WHERE tumour_type = '{TYPES[wanted[i]]}' " if wanted is not None else ""
                    # As recommender.index + selectors do: fetch 4k, re-sort by exact distance, keep k
                    # (relaxed_order may return rows slightly out of order).
                    started = time.perf_counter()
                    cur.execute(
                        f"SELECT id, combined <-> %s::vector AS d FROM {tables[label]} {where}"
                        "ORDER BY combined <-> %s::vector LIMIT %s",
                        [lit, lit, 4 * k],
                    )
                    ids = [row[0] for row in sorted(cur.fetchall(), key=lambda r: r[1])[:k]]
                    times.append((time.perf_counter() - started) * 1000)
                    recalls.append(len(set(ids) & set(truth[filt][i].tolist())) / k)
            conn.commit()
            key = f"{label}_ef{ef}" + {"none": "", "own": "_own_type", "other": "_other_type"}[filt]
            result[key] = {
                "p50_ms": round(float(np.percentile(times, 50)), 2),
                "p99_ms": round(float(np.percentile(times, 99)), 2),
                "recall_at_10": round(float(np.mean(recalls)), 4),
            }

    tables = {"hnsw": table, "partial": f"{table}_by_type"}
    for ef in args.ef_search:
        measure("hnsw", ef)
    if args.partial:
        # The alternative layout: one partial HNSW index per type, so a type filter searches its own graph.
        result["partial_index_build_s"] = _table(conn, tables["partial"], vectors, types, args, partial=True)[
            "build_s"
        ]
        for ef in args.ef_search:
            measure("partial", ef)
    if not args.keep:
        with conn.cursor() as cur:
            for name in tables.values():
                cur.execute(f"DROP TABLE IF EXISTS {name}")
        conn.commit()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        help="case-base sizes to load and time (default 10000 100000)",
    )
    parser.add_argument(
        "--queries", type=int, default=200, help="timed queries per size and setting (default 200)"
    )
    parser.add_argument(
        "--ef-search",
        type=int,
        nargs="+",
        default=[40, 100],
        help="HNSW ef_search values to time (default 40 100)",
    )
    parser.add_argument(
        "--m", type=int, default=32, help="HNSW m, links per node (default 32, as migration 0004)"
    )
    parser.add_argument(
        "--ef-construction",
        type=int,
        default=128,
        help="HNSW ef_construction (default 128, as migration 0004)",
    )
    parser.add_argument(
        "--maintenance-work-mem", default="1GB", help="maintenance_work_mem for the index build (default 1GB)"
    )
    parser.add_argument(
        "--build-workers",
        type=int,
        default=2,
        help="max_parallel_maintenance_workers for the index build (default 2)",
    )
    parser.add_argument(
        "--no-partial", dest="partial", action="store_false", help="skip the per-type partial indexes"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch tables (with their indexes) for a later --reuse"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="use tables kept by an earlier --keep run of the same size and seed instead of "
        "loading and indexing again (the build figures are the stored ones)",
    )
    parser.add_argument(
        "--build-only",
        action="store_true",
        help="load and index, then stop (implies --keep): build on a busy machine, time later",
    )
    parser.add_argument(
        "--prewarm",
        action="store_true",
        help="load the table and its index into shared_buffers (pg_prewarm) before timing",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the synthetic vectors and queries (default 0)"
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    args.keep = args.keep or args.build_only
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        parser.error("set DATABASE_URL=postgres://... (a database with the vector extension)")
    dim = _dimension()
    rng = np.random.default_rng(args.seed)
    results = []
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.commit()
        for n in args.sizes:
            print(f"N={n:,}: loading and indexing ...", flush=True)
            results.append(run_size(conn, n, dim, args, rng))
            r = results[-1]
            reused = f" (indexes built {r['index_reused_from']}, reused)" if r["index_reused_from"] else ""
            print(
                f"  HNSW m={r['m']}, ef_construction={r['ef_construction']}: load {r['load_s']} s, "
                f"HNSW build {r['index_build_s']} s, "
                f"per-type partial indexes {r.get('partial_index_build_s', '-')} s{reused}"
            )
            print(f"  {'method':<28}{'p50 ms':>9}{'p99 ms':>9}{'recall@10':>11}")
            for key, value in r.items():
                if isinstance(value, dict):
                    print(f"  {key:<28}{value['p50_ms']:>9}{value['p99_ms']:>9}{value['recall_at_10']:>11}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
