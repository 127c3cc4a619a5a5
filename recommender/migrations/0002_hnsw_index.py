"""HNSW index over the base cases' combined vectors, on PostgreSQL only (SQLite uses exact numpy search).

Partial: only base cases are ever searched. m=16 / ef_construction=64 are pgvector's defaults, spelled
out so a change is a visible migration. ``recommender.fields.HnswIndex`` builds nothing on SQLite.
"""

from django.db import migrations, models

import recommender.fields


class Migration(migrations.Migration):
    dependencies = [("recommender", "0001_initial")]
    operations = [
        migrations.AddIndex(
            model_name="casefeatures",
            index=recommender.fields.HnswIndex(
                condition=models.Q(in_base=True),
                ef_construction=64,
                fields=["combined"],
                m=16,
                name="recommender_casefeatures_combined_hnsw",
                opclasses=["vector_l2_ops"],
            ),
        ),
    ]
