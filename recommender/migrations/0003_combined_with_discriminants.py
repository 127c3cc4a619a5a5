"""The combined vector gains the tumour-type discriminants (2 more values).

Combined vectors are derived data: they are cleared and the old scalers retired, so the column can
change its length on PostgreSQL; ``manage.py build_case_base`` refits and refills them.
"""

from django.db import migrations

import recommender.fields


def clear_combined(apps, schema_editor):
    apps.get_model("recommender", "CaseFeatures").objects.update(combined=None, scaler=None)
    apps.get_model("recommender", "FeatureScaler").objects.update(is_current=False)


class Migration(migrations.Migration):
    dependencies = [
        ("recommender", "0002_hnsw_index"),
    ]

    operations = [
        migrations.RunPython(clear_combined, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="casefeatures",
            name="combined",
            field=recommender.fields.VectorField(blank=True, dimensions=61, null=True),
        ),
    ]
