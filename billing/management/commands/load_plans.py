from django.core.management.base import BaseCommand

from billing.services import plan_catalogue_sync


class Command(BaseCommand):
    help = "Create or update the plans from billing/catalogue.py (idempotent)."

    def handle(self, *args, **options):
        changed = plan_catalogue_sync()
        self.stdout.write(f"plans changed: {', '.join(changed) if changed else 'none (already current)'}")
