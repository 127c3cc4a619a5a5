"""HNSW index over the base cases' combined vectors, on PostgreSQL only (SQLite uses exact numpy search)."""

from django.db import migrations

INDEX = "recommender_casefeatures_combined_hnsw"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # Partial: only base cases are ever searched. m=16 / ef_construction=64 are pgvector's defaults,
    # spelled out so a change is a visible migration.
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON recommender_casefeatures "
        "USING hnsw (combined vector_l2_ops) WITH (m = 16, ef_construction = 64) WHERE in_base"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("recommender", "0001_initial")]
    operations = [migrations.RunPython(create_index, drop_index)]
