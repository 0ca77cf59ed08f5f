"""The whole customer journey in headless Chromium against a real daphne: sign up, verify the
e-mail, enrol 2FA, log out, log in with the code, create an instance and watch it run, see live
log lines, stop, start, delete; switch language; make an API token. Screenshots land in
test-artifacts/ for people to look at."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import expect

from tests.db import committing_db

from ..conftest import require_service
from ..live_server import live_portal

pytestmark = committing_db
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "journey-passphrase-2026"
RUNNING = re.compile("^running$", re.IGNORECASE)


@pytest.fixture
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    require_service(Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def unlabelled(page) -> list[str]:
    """Form controls a screen reader could not name: no <label>, aria-label or aria-labelledby."""
    return page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter((el) => el.type !== 'hidden' && el.offsetParent !== null)
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                            && !el.getAttribute('aria-labelledby'))
            .map((el) => el.name || el.id || el.outerHTML.slice(0, 60))"""
    )


def latest_link(mail_dir: Path, pattern: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for message in sorted(mail_dir.glob("*.log"), key=os.path.getmtime, reverse=True):
            found = re.search(pattern, message.read_text())
            if found:
                return found.group(0)
        time.sleep(0.1)
    raise AssertionError(f"no e-mail with {pattern}")


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_customer_journey(browser, runtime, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    with live_portal(EMAIL_URL=f"filemail:///{mail_dir}") as (base, _):  # four slashes: an absolute path
        page = browser.new_page(viewport={"width": 1200, "height": 900}, locale="en-US")
        shot = lambda name: page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # noqa: E731
        # The strict Content-Security-Policy must not block anything the console does.
        blocked = []
        page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)

        # Sign up and verify the e-mail address.
        page.goto(f"{base}/accounts/signup/")
        page.fill("input[name=email]", "journey@example.com")
        page.fill("input[name=password1]", PASSWORD)
        page.fill("input[name=password2]", PASSWORD)
        page.click("main button[type=submit]")
        link = latest_link(mail_dir, r"http://[^\s]+/accounts/confirm-email/[^\s]+")
        page.goto(link.replace("http://testserver", base).replace("http://127.0.0.1", "http://127.0.0.1"))
        page.click("main button[type=submit]")

        # Log in, subscribe (the local provider: no payment), enrol two-factor authentication.
        page.goto(f"{base}/accounts/login/")
        page.fill("input[name=login]", "journey@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("main button[type=submit]")
        page.goto(f"{base}/billing/")
        page.select_option("#plan", "professional")
        page.click("main button:has-text('Subscribe')")
        assert "Professional" in page.inner_text("main")
        shot("billing")
        page.goto(f"{base}/accounts/security/2fa/enable/")
        shot("2fa-enrol")
        app = pyotp.TOTP(page.inner_text("code.secret"))
        page.fill("input[name=code]", app.now())
        page.click("main button[type=submit]")
        assert page.locator("ul.codes li").count() == 10

        # Log out; log in again: the password alone is not enough.
        page.click("header button:has-text('Log out')")
        page.goto(f"{base}/accounts/login/")
        page.fill("input[name=login]", "journey@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_url(re.compile(r".*/accounts/2fa/verify/.*"))
        page.fill("input[name=code]", app.at(time.time() + 30))
        page.click("main button[type=submit]")
        page.wait_for_url(f"{base}/")
        shot("dashboard")

        # Create an instance and watch it reach running, with live log lines.
        page.click("text=Create instance")
        page.check("input[value=professional]")
        page.click("main button[type=submit]")
        page.click("main button:has-text('Confirm and create')")
        page.wait_for_url(re.compile(r".*/instances/qm-.*"))
        expect(page.locator("#status")).to_have_text(RUNNING, timeout=60_000)
        expect(page.locator("#logs")).to_contain_text("engine started", timeout=30_000)
        expect(page.locator("#uptime")).not_to_have_text("—", timeout=30_000)
        expect(page.locator("#cpu-chart polyline")).not_to_have_attribute("points", "", timeout=30_000)
        shot("instance")
        assert unlabelled(page) == []

        # Back it up from its Backups page.
        instance_url = page.url
        page.click("text=Backups and restore")
        page.click("main button:has-text('Back up now')")
        page.wait_for_selector("main table code")
        assert "taken" in page.inner_text("main")
        assert unlabelled(page) == []
        shot("backups")
        page.goto(instance_url)
        expect(page.locator("#status")).to_have_text(RUNNING, timeout=60_000)

        # Stop, start, delete (with confirmation).
        page.once("dialog", lambda dialog: dialog.accept())  # stopping asks first
        page.click("main button:has-text('Stop')")
        assert page.inner_text("#status").lower() == "stopped"
        page.click("main button:has-text('Start')")
        expect(page.locator("#status")).to_have_text(RUNNING, timeout=60_000)
        expect(page.locator("#logs")).to_contain_text("engine started", timeout=30_000)
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("main button:has-text('Delete')")
        page.wait_for_url(f"{base}/")
        assert "qm-" not in page.inner_text("main table") if page.locator("main table").count() else True

        # API token, shown once.
        page.goto(f"{base}/accounts/tokens/")
        page.fill("input[name=name]", "journey")
        page.click("main button:has-text('Create token')")
        assert page.inner_text("#token-value").startswith("qm_")
        shot("tokens")

        # Notification settings: Telegram needs a chat id; the form keeps what was typed.
        page.goto(f"{base}/settings/notifications")
        page.uncheck("input[value=resource_high]")
        page.click("main button:has-text('Save')")
        page.wait_for_selector("text=Notification settings saved.")
        assert not page.is_checked("input[value=resource_high]") and page.is_checked("input[value=instance_down]")
        assert unlabelled(page) == []
        shot("notifications")

        # On a phone: nothing wider than the screen.
        page.set_viewport_size({"width": 390, "height": 844})
        for path, name in (("/", "dashboard-phone"), ("/billing/", "billing-phone")):
            page.goto(base + path)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
            assert unlabelled(page) == []
            shot(name)
        page.set_viewport_size({"width": 1280, "height": 900})

        # Switch to Chinese.
        with page.expect_navigation():
            page.select_option("#lang-select", "zh-hans")
        assert "控制面板" in page.content()
        shot("dashboard-zh")
        assert blocked == []
