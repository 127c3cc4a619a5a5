from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in, user_login_failed


class AuditConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from audit import receivers  # noqa: PLC0415 (it imports models: the app registry must be ready)

        user_logged_in.connect(receivers.record_signed_in, dispatch_uid="audit.signed_in")
        user_login_failed.connect(receivers.record_sign_in_failed, dispatch_uid="audit.sign_in_failed")
