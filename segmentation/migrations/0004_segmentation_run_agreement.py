from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("segmentation", "0003_segmentation_run_weights"),
    ]

    operations = [
        migrations.AddField(
            model_name="segmentationrun",
            name="agreement",
            field=models.FloatField(
                blank=True, help_text="ensemble only: mean Dice between every pair of member masks", null=True
            ),
        ),
        migrations.AddField(
            model_name="segmentationrun",
            name="agreement_flagged",
            field=models.BooleanField(
                blank=True, help_text="ensemble only: agreement below the validated flag_below", null=True
            ),
        ),
    ]
