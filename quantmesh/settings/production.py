"""Production: everything from base, plus the refusals that keep an unsafe deployment from starting."""

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import INSECURE_SECRET_KEY, env

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")

if DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production (unset DEBUG or set DEBUG=0).")
if (
    not SECRET_KEY
    or SECRET_KEY == INSECURE_SECRET_KEY
    or SECRET_KEY.startswith("django-insecure")
    or (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5)
):
    raise ImproperlyConfigured("SECRET_KEY is missing or insecure: set a random value of at least 50 characters.")

# Fail closed: every internal endpoint refuses while its token is unset, so production needs them all,
# and an explicit encryption key list (never the key file of the embedded default).
for name in ("QM_METRICS_TOKEN", "QM_TRAEFIK_PROVIDER_TOKEN", "QM_GRAFANA_DATASOURCE_TOKEN"):
    if len(globals()[name]) < 32:
        raise ImproperlyConfigured(f"{name} is missing or short: set a random value of at least 32 characters.")
if not QM_ENCRYPTION_KEYS:  # noqa: F405
    raise ImproperlyConfigured(
        "QM_ENCRYPTION_KEYS is missing: set one or more Fernet keys (python -c 'from cryptography.fernet "
        "import Fernet; print(Fernet.generate_key().decode())'), comma-separated, the newest first."
    )
try:
    [Fernet(key) for key in QM_ENCRYPTION_KEYS]  # noqa: F405
except ValueError:
    raise ImproperlyConfigured("QM_ENCRYPTION_KEYS: each key must be a Fernet key (url-safe base64).") from None

if QM_BILLING_PROVIDER == "local":  # noqa: F405
    raise ImproperlyConfigured(
        "The local billing provider grants plans without payment: set STRIPE_SECRET_KEY in production."
    )

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$", r"^internal/"]  # in-cluster scrapes and probes
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https"
