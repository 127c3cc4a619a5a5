from django.apps import AppConfig
from django.conf import settings
from PIL import Image


class CasesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "cases"
    verbose_name = "Clinical record"

    def ready(self) -> None:
        # Pillow's decompression-bomb guard, at our own pixel limit (it refuses at twice this).
        Image.MAX_IMAGE_PIXELS = settings.TUMORSITE_MAX_PIXELS
