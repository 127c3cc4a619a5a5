"""Studies (#32, items 1 and 3): a DICOM upload's slices join the study of their StudyInstanceUID's keyed
pseudonym, any other upload makes a study of its own; cases get their place in the study.

Every existing case becomes a study of its own (dated by nothing, created when the case was): an old
DICOM case's StudyInstanceUID was replaced by de-identification before it was stored, so the original,
whose keyed pseudonym a new upload of the same study would carry, cannot be recovered; grouping old cases
by their replaced UIDs would give studies that new files of the same study never join. One study per case
keeps the patient's history (which plots studies) the same as before for those cases.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

_BATCH = 1000


def one_study_per_case(apps, schema_editor):
    Case = apps.get_model("cases", "Case")
    Study = apps.get_model("cases", "Study")
    while True:
        batch = list(Case.objects.filter(study__isnull=True).order_by("pk")[:_BATCH])
        if not batch:
            return
        studies = Study.objects.bulk_create(
            [Study(patient_id=case.patient_id, created_at=case.created_at) for case in batch]
        )
        for case, study in zip(batch, studies, strict=True):
            case.study = study
        Case.objects.bulk_update(batch, ["study"])


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0005_m1_mask_versions_deleted_with_their_case"),
    ]

    operations = [
        migrations.CreateModel(
            name="Study",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("uid_pseudonym", models.CharField(blank=True, max_length=32, null=True, unique=True)),
                ("study_date", models.DateField(blank=True, null=True)),
                (
                    "modality",
                    models.CharField(blank=True, help_text="DICOM Modality (MR, CT...)", max_length=16),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "patient",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="studies",
                        to="cases.patient",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "studies",
                "ordering": ["patient_id", "study_date", "created_at", "id"],
            },
        ),
        migrations.AddField(
            model_name="case",
            name="study",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="cases",
                to="cases.study",
            ),
        ),
        migrations.AddField(
            model_name="case",
            name="slice_position",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="case",
            name="slice_number",
            field=models.IntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="case",
            name="series_pseudonym",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.RunPython(one_study_per_case, migrations.RunPython.noop, elidable=True),
    ]
