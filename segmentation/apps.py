from django.apps import AppConfig


class SegmentationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "segmentation"

    def ready(self) -> None:
        # Connects the receiver that sends the messages of queued runs (signals.runs_queued).
        from segmentation import tasks  # noqa: F401, PLC0415 (Django's way to connect receivers)
