import secrets

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.services import demo_user_reset
from billing.selectors import plan_get
from billing.services import subscription_grant_local


class Command(BaseCommand):
    help = "Create (or reset) the demo customer with a verified e-mail and a local subscription; prints the login."

    def add_arguments(self, parser):
        parser.add_argument("--email", default="demo@quantmesh.local")
        parser.add_argument("--plan", default="professional")

    def handle(self, *args, email, plan, **options):
        chosen = plan_get(code=plan)
        if chosen is None:
            raise SystemExit(f"unknown plan {plan!r}: run `manage.py load_plans` first")
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user = demo_user_reset(email=email, password=password)
            subscription_grant_local(user=user, plan=chosen)
        self.stdout.write(f"demo login: {email} / {password} (plan: {chosen.code})")
