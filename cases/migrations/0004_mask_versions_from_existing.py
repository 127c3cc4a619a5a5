"""Every case that already has a ground-truth outline gets it as its version 1 (same stored file)."""

from django.db import migrations


def forwards(apps, schema_editor):
    Case = apps.get_model("cases", "Case")
    MaskVersion = apps.get_model("cases", "MaskVersion")
    cases = Case.objects.exclude(ground_truth_mask="").exclude(ground_truth_mask__isnull=True)
    for case in cases.filter(mask_version__isnull=True).iterator(chunk_size=500):
        version = MaskVersion.objects.create(
            case_id=case.pk,
            number=1,
            file=case.ground_truth_mask.name,
            source=case.mask_source or "imported",
            created_by_id=case.mask_updated_by_id,
            created_at=case.mask_updated_at or case.created_at,
        )
        Case.objects.filter(pk=case.pk).update(mask_version=version)


def backwards(apps, schema_editor):
    # The outline in use stays in Case.ground_truth_mask; earlier versions are only dropped with the table.
    apps.get_model("cases", "Case").objects.update(mask_version=None)


class Migration(migrations.Migration):
    dependencies = [("cases", "0003_mask_versions_revision_curation")]

    operations = [migrations.RunPython(forwards, backwards)]
