"""Model lifecycle (issue #33, item 4): a version's slot and stage, a candidate's evaluation.

Every existing version becomes the active version of the slot named after it (what it was: served
when ``is_active``); an active version is switched off, not retired, when its file is gone.
"""

from django.db import migrations, models
from django.db.models import F


def slot_is_name(apps, schema_editor):
    apps.get_model("segmentation", "ModelVersion").objects.update(slot=F("name"))


class Migration(migrations.Migration):
    dependencies = [
        ("segmentation", "0005_review_reason_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="slot",
            field=models.CharField(
                db_index=True,
                default="",
                help_text="the served name this version is (or was, or may become)",
                max_length=100,
            ),
            preserve_default=False,
        ),
        migrations.RunPython(slot_is_name, migrations.RunPython.noop),
        migrations.AddField(
            model_name="modelversion",
            name="stage",
            field=models.CharField(
                choices=[
                    ("candidate", "Candidate (recorded, never served)"),
                    ("active", "Active (serves its slot)"),
                    ("retired", "Retired (replaced; kept with its file for a rollback)"),
                ],
                default="active",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="modelversion",
            name="evaluation",
            field=models.JSONField(
                blank=True,
                help_text="candidates: evaluate_candidate's paired comparison with the active",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="modelversion",
            name="retired_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddConstraint(
            model_name="modelversion",
            constraint=models.CheckConstraint(
                condition=models.Q(("is_active", False), ("stage", "active"), _connector="OR"),
                name="only_an_active_stage_version_serves",
            ),
        ),
        migrations.AddConstraint(
            model_name="modelversion",
            constraint=models.UniqueConstraint(
                condition=models.Q(("stage", "active")),
                fields=("slot",),
                name="one_active_version_per_slot",
            ),
        ),
    ]
