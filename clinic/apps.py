from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


def _roles_sync(sender, using: str = "default", **kwargs) -> None:
    # post_migrate is sent once per app that has models (clinic has none), and auth makes each app's
    # permissions on its own signal: the last such app's is the one after which all of them exist.
    if sender is not [config for config in apps.get_app_configs() if config.models_module][-1]:
        return
    from clinic.roles import roles_sync  # noqa: PLC0415 (models are not ready while apps load)

    roles_sync(using=using)


class ClinicConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "clinic"
    verbose_name = "Clinic: pages and API"

    def ready(self) -> None:
        # After every migrate (and the test runner's flush), the role groups are made or put right.
        post_migrate.connect(_roles_sync, dispatch_uid="clinic.roles_sync")
