from django.apps import AppConfig


class StrategiesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "strategies"

    def ready(self) -> None:
        # Inline: receivers import models, which load only once the app registry is ready.
        from . import receivers  # noqa: F401  (adaptive instances follow the plan)
