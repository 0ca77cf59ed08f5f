"""The console's account flows: sign-up with e-mail verification, login with the 2FA step, enrolment."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pyotp
import pytest
from django.core import mail
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import SecurityEvent, User

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-enough-passphrase-42"


def signup_and_verify(client, email="new@example.com"):
    response = client.post(
        "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}, follow=True
    )
    assert response.status_code == 200
    assert User.objects.filter(email=email).exists()
    message = mail.outbox[-1]
    assert email in message.to
    link = re.search(r"http://testserver(/accounts/confirm-email/[^\s]+)", message.body).group(1)
    confirm = client.post(link, follow=True)
    assert confirm.status_code == 200
    return User.objects.get(email=email)


def web_login(client, email, password=PASSWORD):
    return client.post("/accounts/login/", {"login": email, "password": password})


def test_signup_requires_email_verification(client):
    client.post("/accounts/signup/", {"email": "v@example.com", "password1": PASSWORD, "password2": PASSWORD})
    client.logout()
    response = web_login(client, "v@example.com")
    assert response.status_code == 302
    assert "confirm-email" in response["Location"] or "verification" in response["Location"]
    assert "_auth_user_id" not in client.session


def test_signup_rejects_weak_password_and_keeps_input(client):
    response = client.post("/accounts/signup/", {"email": "w@example.com", "password1": "short", "password2": "short"})
    assert response.status_code == 200
    assert b"too short" in response.content
    assert b'value="w@example.com"' in response.content
    assert not User.objects.filter(email="w@example.com").exists()


def test_full_journey_signup_verify_enrol_logout_login_with_code(client):
    user = signup_and_verify(client)
    client.logout()
    assert web_login(client, user.email).status_code == 302
    home = client.get("/")
    assert home.status_code == 200

    enrol = client.get("/accounts/security/2fa/enable/")
    assert enrol.status_code == 200
    assert b"<svg" in enrol.content
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    app = pyotp.parse_uri(device.config_url)
    secret_shown = re.search(rb'<code class="secret">([A-Z2-7]+)</code>', enrol.content).group(1).decode()
    assert pyotp.TOTP(secret_shown).now() == app.now()  # the typed-in key matches the QR code

    wrong = client.post("/accounts/security/2fa/enable/", {"code": "000000" if app.now() != "000000" else "111111"})
    assert b"does not match" in wrong.content
    confirmed = client.post("/accounts/security/2fa/enable/", {"code": app.now()}, follow=True)
    assert b"Your backup codes" in confirmed.content
    codes = re.findall(rb"<li><code>([a-z0-9]+)</code></li>", confirmed.content)
    assert len(codes) == 10
    assert b"Your backup codes" not in client.get("/accounts/security/").content  # shown once

    client.post("/accounts/logout/")
    step_one = web_login(client, user.email)
    assert step_one.status_code == 302
    # Password alone gets nowhere: every page sends the user to the code step.
    blocked = client.get("/accounts/security/")
    assert blocked.status_code == 302 and blocked["Location"].startswith("/accounts/2fa/verify/")
    bad = client.post("/accounts/2fa/verify/?next=/accounts/security/", {"code": "12345"})
    assert b"wrong, expired or already used" in bad.content
    good = client.post("/accounts/2fa/verify/?next=/accounts/security/", {"code": app.at(time.time() + 30)})
    assert good.status_code == 302 and good["Location"] == "/accounts/security/"
    assert client.get("/accounts/security/").status_code == 200

    kinds = set(SecurityEvent.objects.filter(user=user).values_list("kind", flat=True))
    assert {"login_ok", "2fa_enabled", "otp_failed", "logout"} <= kinds


def test_backup_code_passes_the_code_step(client, two_factor_user, password):
    user, _, codes = two_factor_user
    web_login(client, user.email, password)
    response = client.post("/accounts/2fa/verify/", {"code": codes[3]})
    assert response.status_code == 302
    assert client.get("/accounts/security/").status_code == 200


def test_unsafe_next_is_ignored(client, two_factor_user, password):
    user, clock, _ = two_factor_user
    web_login(client, user.email, password)
    response = client.post("/accounts/2fa/verify/?next=https://evil.example/", {"code": clock.at_offset(1)})
    assert response["Location"] == "/"


def test_disable_needs_password_and_code(client, two_factor_user, password):
    user, clock, codes = two_factor_user
    web_login(client, user.email, password)
    client.post("/accounts/2fa/verify/", {"code": codes[0]})
    client.post("/accounts/security/2fa/disable/", {"password": "wrong", "code": clock.at_offset(1)})
    assert TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    client.post("/accounts/security/2fa/disable/", {"password": password, "code": clock.at_offset(1)})
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert SecurityEvent.objects.filter(user=user, kind="2fa_disabled").exists()


def test_session_without_second_factor_cannot_use_the_api(client, two_factor_user, password):
    user, _, _ = two_factor_user
    web_login(client, user.email, password)
    assert client.get("/api/auth/me").status_code == 401


def test_verified_session_can_use_the_api(client, user, password):
    web_login(client, user.email, password)
    assert client.get("/api/auth/me").json()["email"] == user.email


@pytest.mark.parametrize("verified_device", [False, True])
def test_admin_needs_a_verified_device(client, make_user, password, verified_device):
    staff = make_user(is_staff=True, is_superuser=True)
    if verified_device:
        from accounts import services

        device = services.two_factor_enrol_begin(user=staff)
        app = pyotp.parse_uri(device.config_url)
        services.two_factor_enrol_confirm(user=staff, code=app.now())
        response = client.post(
            "/admin/login/?next=/admin/",
            {
                "username": staff.email,
                "password": password,
                "otp_device": device.persistent_id,
                "otp_token": app.at(time.time() + 30),
            },
        )
        assert response.status_code == 302, response.content[:2000]
        page = client.get("/admin/accounts/securityevent/?q=" + staff.email)
        assert page.status_code == 200
    else:
        client.force_login(staff)
        response = client.get("/admin/")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_password_reset_by_email(client, user):
    response = client.post("/accounts/password/reset/", {"email": user.email})
    assert response.status_code == 302
    link = re.search(r"http://testserver(/accounts/password/reset/key/[^\s]+)", mail.outbox[-1].body).group(1)
    form = client.get(link, follow=True)
    action = form.redirect_chain[-1][0] if form.redirect_chain else link
    done = client.post(action, {"password1": "a-brand-new-passphrase-7", "password2": "a-brand-new-passphrase-7"})
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password("a-brand-new-passphrase-7")


def test_console_session_ends_when_idle_and_each_request_renews_it(client, user, settings):
    from django.contrib.sessions.models import Session

    client.force_login(user)
    assert client.get("/billing/").status_code == 200
    session = Session.objects.get()
    Session.objects.filter(pk=session.pk).update(expire_date=timezone.now() + timedelta(minutes=1))
    assert client.get("/billing/").status_code == 200
    idle_limit = timedelta(seconds=settings.SESSION_COOKIE_AGE)
    assert Session.objects.get(pk=session.pk).expire_date > timezone.now() + idle_limit - timedelta(minutes=1)
    Session.objects.filter(pk=session.pk).update(expire_date=timezone.now() - timedelta(seconds=1))  # idle too long
    response = client.get("/billing/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_confirming_the_email_signs_in_and_mails_carry_the_product_name(client):
    """Confirming the e-mail signed nobody in (log in again), and the e-mail said "[example.com]"."""
    user = signup_and_verify(client, email="fresh@example.com")
    assert client.session.get("_auth_user_id") == str(user.pk)
    home = client.get("/")
    assert b"Create instance" in home.content
    message = mail.outbox[-1]
    assert message.subject.startswith("[QuantMesh Cloud]") and "example.com]" not in message.subject
    assert "QuantMesh Cloud" in message.body


def test_no_signed_in_banner_before_the_second_factor(client, two_factor_user, password):
    user, clock, _ = two_factor_user
    response = client.post("/accounts/login/", {"login": user.email, "password": password}, follow=True)
    assert "/accounts/2fa/verify/" in response.redirect_chain[-1][0]
    assert b"Successfully signed in" not in response.content
    done = client.post("/accounts/2fa/verify/", {"code": clock.at_offset(1)}, follow=True)
    assert done.status_code == 200 and b"Successfully signed in" not in done.content


def test_security_page_ids_are_unique(client, two_factor_user, password):
    user, _, codes = two_factor_user
    web_login(client, user.email, password)
    client.post("/accounts/2fa/verify/", {"code": codes[0]})
    page = client.get("/accounts/security/").content.decode()
    assert 'name="code"' in page
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert ids and len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_the_account_remembers_the_language_for_what_is_written_outside_a_request(client, user):
    """Alerts and DNS messages are written by workers: the account keeps the language the customer signed
    up in and the one they last switched to."""
    client.post(
        "/accounts/signup/",
        {"email": "zh@example.com", "password1": PASSWORD, "password2": PASSWORD},
        HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9",
    )
    assert User.objects.get(email="zh@example.com").language == "zh-hans"
    user.language = ""  # an account from before the stored language: its next login fills it in
    user.save(update_fields=["language"])
    client.force_login(user)
    user.refresh_from_db()
    assert user.language == "en"
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    user.refresh_from_db()
    assert user.language == "zh-hans"
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    client.post("/i18n/setlang/", {"language": "klingon", "next": "/"})  # not offered: ignored
    user.refresh_from_db()
    assert user.language == "en"
