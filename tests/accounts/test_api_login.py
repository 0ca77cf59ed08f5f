"""POST /api/auth/login as the manual shows it, with 2FA, replay protection and throttling."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import ApiToken, SecurityEvent
from accounts.services import hash_token

pytestmark = pytest.mark.django_db
URL = "/api/auth/login"


def login(client, **body):
    return client.post(URL, body, format="json")


def test_login_returns_token_and_expiry(anon_client, user, password):
    response = login(anon_client, email=user.email, password=password)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    token = ApiToken.objects.get(user=user)
    assert token.key_hash == hash_token(body["token"])  # stored hashed, never in clear
    assert body["token"] not in json.dumps(list(ApiToken.objects.values()), default=str)
    expires = parse_datetime(body["expires_at"])
    assert timedelta(days=29, hours=23) < expires - timezone.now() <= timedelta(days=30)
    assert SecurityEvent.objects.filter(user=user, kind="login_ok").exists()


def test_manual_curl_line_without_content_type_works(anon_client, user, password):
    # curl -d '{"email":...}' sends application/x-www-form-urlencoded with a JSON body.
    body = json.dumps({"email": user.email, "password": password})
    response = anon_client.post(URL, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.content
    assert response.json()["token"].startswith("qm_")


def test_email_is_case_insensitive(anon_client, user, password):
    response = login(anon_client, email=user.email.upper(), password=password)
    assert response.status_code == 200


def test_wrong_password_is_401_and_audited(anon_client, user):
    response = login(anon_client, email=user.email, password="wrong-password")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert SecurityEvent.objects.filter(email=user.email, kind="login_failed").count() == 1


def test_unknown_email_is_the_same_401(anon_client):
    response = login(anon_client, email="nobody@example.com", password="whatever-password")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


def test_unverified_email_cannot_log_in(anon_client, make_user, password):
    user = make_user(verified=False)
    response = login(anon_client, email=user.email, password=password)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "email_unverified"
    assert not ApiToken.objects.filter(user=user).exists()


def test_inactive_user_cannot_log_in(anon_client, user, password):
    user.is_active = False
    user.save()
    assert login(anon_client, email=user.email, password=password).status_code == 401


def test_two_factor_requires_otp(anon_client, two_factor_user, password):
    user, clock, _ = two_factor_user
    response = login(anon_client, email=user.email, password=password)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "otp_required"
    assert not ApiToken.objects.filter(user=user).exists()


def test_two_factor_rejects_wrong_otp(anon_client, two_factor_user, password):
    user, clock, _ = two_factor_user
    response = login(
        anon_client, email=user.email, password=password, otp="000000" if clock.now() != "000000" else "111111"
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "otp_invalid"
    assert SecurityEvent.objects.filter(user=user, kind="otp_failed").exists()


def test_two_factor_accepts_code_once(anon_client, two_factor_user, password):
    user, clock, _ = two_factor_user
    code = clock.at_offset(1)  # enrolment consumed the current step
    first = login(anon_client, email=user.email, password=password, otp=code)
    assert first.status_code == 200, first.content
    replay = login(anon_client, email=user.email, password=password, otp=code)
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "otp_invalid"


def test_backup_code_works_once(anon_client, two_factor_user, password):
    user, _, codes = two_factor_user
    assert login(anon_client, email=user.email, password=password, otp=codes[0]).status_code == 200
    again = login(anon_client, email=user.email, password=password, otp=codes[0])
    assert again.status_code == 401
    assert SecurityEvent.objects.filter(user=user, kind="backup_code_used").count() == 1


@override_settings(QM_LOGIN_ACCOUNT_FAILURES=3)
def test_repeated_failures_lock_the_account(anon_client, user, password):
    for _ in range(3):
        assert login(anon_client, email=user.email, password="bad-password-x").status_code == 401
    locked = login(anon_client, email=user.email, password=password)  # even the right password
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) > 0
    assert locked.json()["error"]["code"] == "rate_limited"
    assert SecurityEvent.objects.filter(email=user.email, kind="account_locked").count() == 1
    assert not ApiToken.objects.filter(user=user).exists()


@override_settings(QM_LOGIN_ACCOUNT_FAILURES=3)
def test_unknown_address_locks_like_a_real_one(anon_client):
    for _ in range(3):
        login(anon_client, email="ghost@example.com", password="bad-password-x")
    assert login(anon_client, email="ghost@example.com", password="bad-password-x").status_code == 429


@override_settings(QM_LOGIN_IP_LIMIT=4)
def test_login_is_throttled_per_ip(anon_client, make_user, password):
    users = [make_user() for _ in range(5)]
    statuses = [login(anon_client, email=u.email, password=password).status_code for u in users]
    assert statuses[:4] == [200] * 4
    assert statuses[4] == 429
    response = login(anon_client, email=users[0].email, password=password)
    assert 0 < int(response["Retry-After"]) <= 60
    assert SecurityEvent.objects.filter(kind="login_throttled").count() == 2


@override_settings(QM_LOGIN_ACCOUNT_FAILURES=3)
def test_success_resets_failure_count(anon_client, user, password):
    for _ in range(2):
        login(anon_client, email=user.email, password="bad-password-x")
    assert login(anon_client, email=user.email, password=password).status_code == 200
    for _ in range(2):
        login(anon_client, email=user.email, password="bad-password-x")
    assert login(anon_client, email=user.email, password=password).status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        ({"password": "x"}, "email"),
        ({"email": "not-an-email", "password": "x"}, "email"),
        ({"email": "a@example.com"}, "password"),
        ({"email": "a@example.com", "password": "x", "role": "admin"}, "role"),
        ({"email": "a@example.com", "password": "x" * 256}, "password"),
    ],
)
def test_bad_login_bodies_name_the_field(anon_client, body, field):
    response = login(anon_client, **body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["details"]
    assert error["message"].startswith(field)
