"""Tests: base settings with a fast password hasher and mail kept in memory."""

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Mail stays in memory, unless a test's live server is told where to put it (EMAIL_URL=filemail://…).
if not env.str("EMAIL_URL", default=""):  # noqa: F405
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Tasks run in the caller, unless a test's live portal and worker use the broker (=0).
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)  # noqa: F405
# django-otp delays retries after a wrong code (1 s, 2 s, 4 s...); tests enter codes back to back.
OTP_TOTP_THROTTLE_FACTOR = 0
OTP_STATIC_THROTTLE_FACTOR = 0

# A SQLite test database in a file (not in memory), so a live daphne or worker process started by a
# test shares it. On PostgreSQL the test database is shared anyway.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}  # noqa: F405
