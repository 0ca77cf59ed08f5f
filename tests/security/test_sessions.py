"""Sessions that really end, and a lock-out nobody can turn against a customer.

Attacks reproduced: the instance cookie outliving logout and password changes, a forged instance
cookie signed with the public embedded SECRET_KEY, API tokens surviving password resets, five wrong
passwords from anywhere locking the victim out, and the admin login telling whether a staff
password is right."""

from __future__ import annotations

import re
import time
from urllib.parse import urlparse

import pyotp
import pytest
from django.core import mail, signing
from django.test import override_settings
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import ApiToken, SecurityEvent
from instances.models import Instance
from tests.db import committing_db

from ..live_server import console_login, http_request, live_portal

NEW_PASSWORD = "a-brand-new-passphrase-7"


def api_login(address: str, email: str, password: str, otp: str | None = None):
    body = {"email": email, "password": password, **({"otp": otp} if otp else {})}
    return APIClient(REMOTE_ADDR=address).post("/api/auth/login", body, format="json")


def reset_password(client, email: str, password: str) -> None:
    client.post("/accounts/password/reset/", {"email": email})
    link = re.search(r"http://testserver(/accounts/password/reset/key/[^\s]+)", mail.outbox[-1].body).group(1)
    form = client.get(link, follow=True)
    action = form.redirect_chain[-1][0] if form.redirect_chain else link
    assert client.post(action, {"password1": password, "password2": password}).status_code == 302


@pytest.mark.django_db
@override_settings(QM_LOGIN_ACCOUNT_FAILURES=5)
def test_wrong_passwords_from_an_attacker_do_not_lock_the_victim_out(user, password, client):
    for _ in range(6):
        assert api_login("203.0.113.66", user.email, "wrong-password-x").status_code in (401, 429)
    assert api_login("203.0.113.66", user.email, password).status_code == 429  # the attacker's address is locked
    assert api_login("198.51.100.10", user.email, password).status_code == 200  # the victim, elsewhere, is not
    web = client.post("/accounts/login/", {"login": user.email, "password": password}, REMOTE_ADDR="198.51.100.10")
    assert web.status_code == 302 and "_auth_user_id" in client.session


@pytest.mark.django_db
@override_settings(QM_LOGIN_ACCOUNT_FAILURES=3)
def test_a_password_reset_lifts_the_lock_even_behind_the_same_address(user, password, client):
    for _ in range(3):
        api_login("203.0.113.5", user.email, "wrong-password-x")
    assert api_login("203.0.113.5", user.email, password).status_code == 429  # one NAT: victim and attacker
    reset_password(client, user.email, NEW_PASSWORD)
    assert api_login("203.0.113.5", user.email, NEW_PASSWORD).status_code == 200


@pytest.mark.django_db
@override_settings(QM_LOGIN_ACCOUNT_FAILURES=3)
def test_a_second_factor_login_lifts_the_lock_everywhere(two_factor_user, password):
    user, clock, backup_codes = two_factor_user
    for address in ["203.0.113.5", "203.0.113.6"]:
        for _ in range(3):
            api_login(address, user.email, "wrong-password-x")
        assert api_login(address, user.email, password, backup_codes[0]).status_code == 429
    assert api_login("198.51.100.10", user.email, password, clock.at_offset(1)).status_code == 200
    assert api_login("203.0.113.5", user.email, password, backup_codes[0]).status_code == 200
    assert api_login("203.0.113.6", user.email, password, backup_codes[1]).status_code == 200


@pytest.mark.django_db
def test_password_reset_revokes_every_api_token_and_is_recorded(user, password, client):
    raws = [account_services.api_token_create(user=user, name=f"t{n}")[1] for n in range(3)]
    before = SecurityEvent.objects.filter(user=user, kind="password_changed").count()  # the factory set one
    for attempt in range(3):  # "three resets, old token still 200"
        reset_password(client, user.email, f"{NEW_PASSWORD}-{attempt}")
        for raw in raws:
            response = APIClient().get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
            assert response.status_code == 401, (attempt, raw[:8])
    assert ApiToken.objects.filter(user=user, revoked_at__isnull=True).count() == 0  # listed as revoked
    events = SecurityEvent.objects.filter(user=user, kind="password_changed").order_by("created_at")
    assert events.count() == before + 3
    assert sorted(events[before].detail["tokens_revoked"]) == sorted(
        ApiToken.objects.filter(user=user).values_list("pk", flat=True)
    )
    fresh = api_login("198.51.100.10", user.email, f"{NEW_PASSWORD}-2").json()["token"]
    assert APIClient().get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {fresh}").status_code == 200


@pytest.mark.django_db
def test_password_change_ends_the_console_sessions_and_tokens(user, password, client):
    other_browser = type(client)()
    for browser in (client, other_browser):
        browser.post("/accounts/login/", {"login": user.email, "password": password})
        assert browser.get("/billing/").status_code == 200
    _, raw = account_services.api_token_create(user=user)
    before = SecurityEvent.objects.filter(user=user, kind="password_changed").count()  # the factory set one
    changed = client.post(
        "/accounts/password/change/",
        {"oldpassword": password, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert changed.status_code == 302
    for browser in (client, other_browser):
        assert browser.get("/billing/").status_code == 302  # back to the login page
    assert APIClient().get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert SecurityEvent.objects.filter(user=user, kind="password_changed").count() == before + 1


@pytest.mark.django_db
@override_settings(QM_LOGIN_ACCOUNT_FAILURES=3)
def test_admin_login_is_throttled_and_says_the_same_for_every_failure(client, make_user, password):
    staff = make_user(is_staff=True, is_superuser=True)
    device = account_services.two_factor_enrol_begin(user=staff)
    app = pyotp.parse_uri(device.config_url)
    account_services.two_factor_enrol_confirm(user=staff, code=app.now())

    def attempt(secret: str, token: str = "") -> str:
        response = client.post(
            "/admin/login/?next=/admin/",
            {"username": staff.email, "password": secret, "otp_device": device.persistent_id, "otp_token": token},
        )
        assert response.status_code == 200  # the form again: no way in
        return re.search(rb'<p class="errornote">\s*(.*?)\s*</p>', response.content, re.S).group(1).decode()

    wrong_password = attempt("wrong-password-x")
    right_password_no_code = attempt(password)
    right_password_wrong_code = attempt(password, "000000")
    assert wrong_password == right_password_no_code == right_password_wrong_code
    assert "OTP" not in right_password_no_code
    # Three failures: locked from this address, even with everything right, and still the same words.
    assert attempt(password, app.at(time.time() + 30)) == wrong_password
    assert SecurityEvent.objects.filter(email=staff.email, kind="account_locked").count() == 1


@pytest.fixture
def instance_and_portal(create_instance):
    instance = Instance.objects.get(instance_id=create_instance("personal")["instance_id"])
    with live_portal() as (base, _):
        yield base, instance, f"instance-{instance.slug}.localhost"


def hand_over(base: str, host: str, instance, session: str) -> str:
    handover, _ = http_request(base, "localhost", f"/instances/{instance.instance_id}/open", {"Cookie": session})
    target = urlparse(handover.getheader("Location"))
    response, _ = http_request(base, host, f"{target.path}?{target.query}")
    cookie = response.getheader("Set-Cookie").split(";")[0]
    page, _ = http_request(base, host, "/api/status", {"Cookie": cookie})
    assert page.status == 200
    return cookie


def csrf_post(base: str, path: str, session: str, fields: dict[str, str]):
    from urllib.parse import urlencode

    csrf = re.search(r"csrftoken=([^;]+)", session).group(1)
    body = urlencode({**fields, "csrfmiddlewaretoken": csrf})
    headers = {"Cookie": session, "Content-Type": "application/x-www-form-urlencoded", "Referer": f"{base}/"}
    return http_request(base, "localhost", path, headers, method="POST", body=body)[0]


@committing_db
@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_logout_and_password_change_end_the_instance_cookie(instance_and_portal, customer, password):
    base, instance, host = instance_and_portal
    session = console_login(base, customer.email, password)
    cookie = hand_over(base, host, instance, session)
    assert csrf_post(base, "/accounts/logout/", session, {}).status == 302
    assert http_request(base, host, "/api/status", {"Cookie": cookie})[0].status == 404  # logout ended it

    session = console_login(base, customer.email, password)
    cookie = hand_over(base, host, instance, session)
    changed = csrf_post(
        base,
        "/accounts/password/change/",
        session,
        {"oldpassword": password, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert changed.status == 302
    assert http_request(base, host, "/api/status", {"Cookie": cookie})[0].status == 404  # so did the new password


@committing_db
@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_an_instance_cookie_forged_with_the_embedded_secret_key_is_refused(instance_and_portal, customer):
    base, instance, host = instance_and_portal
    # What an attacker could sign with the public embedded key: the old cookie format and variants.
    forgeries = [
        signing.dumps({"u": customer.pk, "s": instance.slug}, salt="quantmesh.instance-cookie"),
        signing.dumps({"u": customer.pk, "s": instance.slug, "k": "x" * 32}, salt="quantmesh.instance-cookie"),
        signing.dumps({"u": customer.pk, "s": instance.slug}),
    ]
    for value in forgeries:
        response, body = http_request(base, host, "/api/status", {"Cookie": f"qm_instance={value}"})
        assert response.status == 404, value
        assert instance.instance_id.encode() not in body
