from django.apps import AppConfig


class AlertsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "alerts"

    def ready(self) -> None:
        # Inline: receivers import models, which load only once the app registry is ready.
        from . import receivers  # noqa: F401  (connect the signal receivers)
