from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self):
        from django.db.models.signals import post_migrate

        from . import schema, signals  # noqa: F401  (OpenAPI auth schemes; login/logout events → audit trail)
        from .site import site_name_the_product

        post_migrate.connect(site_name_the_product, sender=self)
