"""The HNSW index gets a larger graph: m=32, ef_construction=128 (was pgvector's defaults, 16 / 64).

Measured with ``benchmarks/recommender.py`` on clustered vectors of the real dimension (README, "Search
at scale"): at 100k, recall@10 at ef_search=40 rose from 0.957 to 0.9945 for about the same query time;
at 1M the default graph reached only 0.908 at ef_search=100. The index is rebuilt from the stored
vectors; PostgreSQL only (SQLite uses exact numpy search).
"""

from django.db import migrations

INDEX = "recommender_casefeatures_combined_hnsw"


def _rebuild(schema_editor, m: int, ef_construction: int) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")
    schema_editor.execute(
        f"CREATE INDEX {INDEX} ON recommender_casefeatures "
        f"USING hnsw (combined vector_l2_ops) WITH (m = {m}, ef_construction = {ef_construction}) WHERE in_base"
    )


def larger_graph(apps, schema_editor):
    _rebuild(schema_editor, 32, 128)


def default_graph(apps, schema_editor):
    _rebuild(schema_editor, 16, 64)


class Migration(migrations.Migration):
    dependencies = [("recommender", "0003_combined_with_discriminants")]
    operations = [migrations.RunPython(larger_graph, default_graph)]
