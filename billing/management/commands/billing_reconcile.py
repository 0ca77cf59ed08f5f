from django.core.management.base import BaseCommand

from billing.services import subscriptions_reconcile


class Command(BaseCommand):
    help = (
        "Compare every entitled subscription with Stripe and follow it; end entitlements Stripe no "
        "longer has or whose paid period ended more than QM_BILLING_RECONCILE_MARGIN_DAYS ago. "
        "Runs daily in Celery beat; safe to run any time."
    )

    def handle(self, *args, **options):
        counts = subscriptions_reconcile()
        self.stdout.write(", ".join(f"{key}: {value}" for key, value in counts.items()))
