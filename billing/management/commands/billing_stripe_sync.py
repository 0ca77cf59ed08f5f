from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing.services import plan_catalogue_sync, plans_stripe_sync, stripe_webhook_endpoint_ensure
from billing.stripe_gateway import StripeUnavailable


class Command(BaseCommand):
    help = (
        "Create or update the Stripe products and prices (monthly and yearly) from the plan catalogue, "
        "and the portal's webhook endpoint in Stripe. Idempotent: run it after every catalogue change."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--webhook-base-url",
            default=settings.QM_PUBLIC_URL,
            help="The portal's public address Stripe posts webhooks to (default: QM_PUBLIC_URL).",
        )
        parser.add_argument("--skip-webhook", action="store_true", help="Only products and prices.")

    def handle(self, *args, **options):
        if settings.QM_BILLING_PROVIDER != "stripe":
            raise CommandError("Stripe is not configured: set STRIPE_SECRET_KEY first.")
        plan_catalogue_sync()
        try:
            for code, (month, year) in plans_stripe_sync().items():
                self.stdout.write(f"{code}: monthly {month}, yearly {year}")
            if not options["skip_webhook"]:
                endpoint = stripe_webhook_endpoint_ensure(base_url=options["webhook_base_url"])
                self.stdout.write(f"webhook endpoint {endpoint.id}: {endpoint.url}")
        except StripeUnavailable as error:
            raise CommandError(f"Stripe refused the request: {error}") from error
