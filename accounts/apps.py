from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"

    def ready(self):
        # Inline: these import models, which load only once the app registry is ready.
        # OpenAPI auth schemes; login/logout events -> audit trail; writes -> accounts/auth_cache.py
        from . import receivers, schema, signals  # noqa: F401
        from .site import site_name_the_product

        post_migrate.connect(site_name_the_product, sender=self)
