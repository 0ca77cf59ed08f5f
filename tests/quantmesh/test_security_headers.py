"""Security headers and the Content-Security-Policy on the console, the API and the API docs."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def test_console_pages_get_a_strict_policy_and_security_headers(client, user):
    client.force_login(user)
    for path in ("/", "/billing/", "/settings/notifications", "/accounts/login/"):
        response = client.get(path)
        csp = response["Content-Security-Policy"]
        assert "script-src 'self';" in csp and "'unsafe-inline'" not in csp, path
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert "form-action 'self' https://checkout.stripe.com https://billing.stripe.com" in csp
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["Cross-Origin-Opener-Policy"] == "same-origin"
        assert "camera=()" in response["Permissions-Policy"]


def test_api_answers_carry_them_too_and_only_the_docs_page_may_run_its_inline_script(api_client):
    response = api_client.get("/api/billing/plans")
    assert response["Content-Security-Policy"].startswith("default-src 'self'")
    docs = api_client.get("/api/docs/")
    assert docs.status_code == 200
    assert "script-src 'self' 'unsafe-inline'" in docs["Content-Security-Policy"]


def test_templates_hold_no_inline_script_or_style(settings):
    from pathlib import Path

    for template in (Path(settings.BASE_DIR) / "templates").rglob("*.html"):
        text = template.read_text()
        assert "<script>" not in text and "<script type=" not in text, template
        assert " style=" not in text and "<style" not in text, template
        assert not re.search(r"\son[a-z]+=", text), template  # inline event handlers


def test_oversized_bodies_are_refused_before_they_are_read(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api_client.post("/api/saas/instances/create", data="x" * 1001, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "payload_too_large",
        "message": "The request body is 1001 bytes; the limit is 1000 bytes.",
        "details": {"limit": 1000},
    }
    assert api_client.post("/api/saas/instances/create", data="{}", content_type="application/json").status_code != 413


def test_console_forms_need_the_csrf_token(user):
    """A cross-site form post with the victim's session is refused; the same post with the page's
    token goes through."""
    import re

    from django.test import Client

    from alerts.models import AlertSettings

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    form = {"email_enabled": "on", "telegram_chat_id": "", "events": ["backup_failed"]}
    assert browser.post("/settings/notifications", form).status_code == 403
    assert not AlertSettings.objects.filter(user=user, events=["backup_failed"]).exists()
    page = browser.get("/settings/notifications").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert browser.post("/settings/notifications", {**form, "csrfmiddlewaretoken": token}).status_code == 302
    assert AlertSettings.objects.get(user=user).events == ["backup_failed"]
