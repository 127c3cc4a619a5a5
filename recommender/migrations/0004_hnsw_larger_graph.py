"""The HNSW index gets a larger graph: m=32, ef_construction=128 (was pgvector's defaults, 16 / 64).

Measured with ``benchmarks/recommender.py`` on clustered vectors of the real dimension
(docs/benchmarks.md, "Search at scale"): at 100k, recall@10 at ef_search=40 rose from 0.957 to 0.9945 for
about the same query time; at 1M the default graph reached only 0.908 at ef_search=100. The index is
rebuilt from the stored vectors; PostgreSQL only (SQLite uses exact numpy search).
"""

from django.db import migrations, models

import recommender.fields

NAME = "recommender_casefeatures_combined_hnsw"


class Migration(migrations.Migration):
    dependencies = [("recommender", "0003_combined_with_discriminants")]
    operations = [
        migrations.RemoveIndex(model_name="casefeatures", name=NAME),
        migrations.AddIndex(
            model_name="casefeatures",
            index=recommender.fields.HnswIndex(
                condition=models.Q(in_base=True),
                ef_construction=128,
                fields=["combined"],
                m=32,
                name=NAME,
                opclasses=["vector_l2_ops"],
            ),
        ),
    ]
