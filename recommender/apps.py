from django.apps import AppConfig


class RecommenderConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recommender"

    def ready(self) -> None:
        # Connects the receivers; they import models, so not before the app registry is ready.
        from recommender import receivers  # noqa: F401, PLC0415 (Django's documented place: AppConfig.ready)
