from django.apps import AppConfig


class InstancesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "instances"

    def ready(self):
        from . import billing_hooks  # noqa: F401  (instances follow the user's plan)
