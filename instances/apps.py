from django.apps import AppConfig


class InstancesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "instances"

    def ready(self):
        # Inline: receivers import models, which load only once the app registry is ready.
        from . import billing_hooks  # noqa: F401  (instances follow the user's plan)
