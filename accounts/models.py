from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)

    def get_by_natural_key(self, email):
        return self.get(email__iexact=email)


class User(AbstractBaseUser, PermissionsMixin):
    """A customer or a staff member; the e-mail address is the login."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    # The console language last chosen (or the browser's at sign-up): what alerts, e-mails and DNS
    # messages written outside a request use. Empty: the site's default.
    language = models.CharField(max_length=10, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def save(self, *args, **kwargs):
        # set_password() keeps the new password until the save; on an existing account that is a
        # password change, from whichever path (console, reset link, admin, manage.py).
        changed = self._password is not None and not self._state.adding
        super().save(*args, **kwargs)
        if changed:
            from .signals import password_changed  # cycle: signals.py imports these models

            password_changed.send(sender=type(self), user=self)


class ApiToken(models.Model):
    """A bearer token. Only its SHA-256 is stored; the token itself is shown once at creation."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    # The first characters, so a person can tell tokens apart without the secret part.
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class SecurityEvent(models.Model):
    """Audit trail of security-relevant events, visible to the user and searchable by staff."""

    class Kind(models.TextChoices):
        LOGIN_OK = "login_ok", _("Login succeeded")
        LOGIN_FAILED = "login_failed", _("Login failed")
        LOGIN_THROTTLED = "login_throttled", _("Login throttled")
        ACCOUNT_LOCKED = "account_locked", _("Account locked")
        LOGOUT = "logout", _("Logged out")
        OTP_FAILED = "otp_failed", _("Two-factor code rejected")
        TWO_FACTOR_ENABLED = "2fa_enabled", _("Two-factor enabled")
        TWO_FACTOR_DISABLED = "2fa_disabled", _("Two-factor disabled")
        BACKUP_CODES_GENERATED = "backup_codes_generated", _("Backup codes generated")
        BACKUP_CODE_USED = "backup_code_used", _("Backup code used")
        TOKEN_CREATED = "token_created", _("API token created")
        TOKEN_REVOKED = "token_revoked", _("API token revoked")
        PASSWORD_CHANGED = "password_changed", _("Password changed")
        TOKEN_GUESSING = "token_guessing", _("Invalid API tokens throttled")

    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="security_events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # The e-mail as typed, so failed logins for unknown addresses are searchable too.
    email = models.CharField(max_length=254, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"]), models.Index(fields=["kind", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.email} {self.created_at:%Y-%m-%d %H:%M}"
