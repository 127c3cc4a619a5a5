from django.apps import AppConfig


class RecommenderConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "recommender"

    def ready(self) -> None:
        # Connects the receivers; they import models, so not before the app registry is ready. They import
        # recommender.tasks, so the embedded queue has the task (a worker finds it by autodiscovery too),
        # and nothing that loads TensorFlow: the web process imports this.
        from recommender import receivers  # noqa: F401, PLC0415 (Django's documented place: AppConfig.ready)
