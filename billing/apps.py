from django.apps import AppConfig


class BillingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "billing"

    def ready(self) -> None:
        # Inline: receivers import models, which load only once the app registry is ready.
        from . import receivers, webhooks  # noqa: F401  (connect the signal receivers)
