"""The whole customer journey in headless Chromium against a real daphne, from the landing page:
start the trial, confirm the e-mail (which signs in), subscribe, enrol 2FA, log out and in with the
code, create an instance and watch it trade (state, PnL, price with grid and fills, orders, logs,
resources), back it up, stop and start it, break its configuration and see the console say so, open
the engine's own page, delete it; tokens, notifications, support; every page again on a 390 px phone
and in Chinese. It fails on any console error, CSP violation, horizontal overflow or untranslated
text, and saves screenshots in test-artifacts/ for people to look at."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import expect

from tests.db import committing_db
from tests.i18n_check import untranslated

from ..live_server import live_portal

pytestmark = committing_db
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "journey-passphrase-2026"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
BAD_CONFIG = b"grid: {max_layers: 0}\n"


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
    from instances.runtime import get_backend

    ARTIFACTS.mkdir(exist_ok=True)
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    with live_portal(EMAIL_URL=f"filemail:///{mail_dir}", QM_ENGINE_SAMPLE_SECONDS="3") as (base, _):
        page = browser.new_page(viewport=DESKTOP, locale="en-US")
        shot = lambda name: page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # noqa: E731
        problems = []  # console errors, CSP violations and uncaught exceptions, on any page
        page.on("console", lambda m: problems.append(f"{m.text} {m.location['url']}") if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        clicks = 0

        def click(selector: str) -> None:
            nonlocal clicks
            clicks += 1
            page.click(selector)

        def check_page(name: str, language: str = "en") -> None:
            """No sideways scroll, every control labelled, nothing in the wrong language; a screenshot."""
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), name
            assert unlabelled(page) == [], name
            assert untranslated(page.content(), language) == [], (name, language)
            shot(name)

        # From the landing page: the trial offer, sign up, confirm the e-mail (that signs in).
        page.goto(f"{base}/")
        check_page("landing")
        click("main a:has-text('Start your free 7-day trial')")
        page.fill("input[name=email]", "journey@example.com")
        page.fill("input[name=password1]", PASSWORD)
        page.fill("input[name=password2]", PASSWORD)
        click("main button[type=submit]")
        link = latest_link(mail_dir, r"http://[^\s]+/accounts/confirm-email/[^\s]+")
        clicks += 1  # the link in the e-mail
        page.goto(link.replace("http://testserver", base))
        click("main button[type=submit]")
        page.wait_for_url(f"{base}/")
        assert page.locator("header button:has-text('Log out')").count() == 1  # signed in, no second login
        # Straight to a running instance on the trial (the click count the issue asks for).
        click("main a:has-text('Create instance')")
        check_page("create")
        click("main button:has-text('Create instance')")
        page.wait_for_url(re.compile(r".*/instances/qm-.*"))
        expect(page.locator("#status")).to_have_attribute("data-status", "running", timeout=60_000)
        print(f"clicks from the landing page to a running instance: {clicks}")
        assert clicks <= 6
        trial_instance = page.url
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("main button:has-text('Delete')")
        page.wait_for_url(f"{base}/")

        # Subscribe: the plans side by side, each with its amounts.
        page.goto(f"{base}/billing/")
        assert page.locator("main form.plan").count() == 3
        page.click("#subscribe-professional >> xpath=.. >> button:has-text('$199 per month')")
        assert "Professional" in page.inner_text("main") and "billed monthly" in page.inner_text("main")
        check_page("billing")

        # Two-factor authentication; log out; in again: the password alone is not enough.
        page.goto(f"{base}/accounts/security/2fa/enable/")
        shot("2fa-enrol")
        app = pyotp.TOTP(page.inner_text("code.secret"))
        page.fill("input[name=code]", app.now())
        page.click("main button[type=submit]")
        assert page.locator("ul.codes li").count() == 10
        page.click("header button:has-text('Log out')")
        page.goto(f"{base}/accounts/login/")
        page.fill("input[name=login]", "journey@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_url(re.compile(r".*/accounts/2fa/verify/.*"))
        assert "Successfully signed in" not in page.content()  # not before the second factor
        page.fill("input[name=code]", app.at(time.time() + 30))
        page.click("main button[type=submit]")
        page.wait_for_url(f"{base}/")
        assert page.url != trial_instance

        # Create on the customer's own plan (pre-selected, in words) and watch it trade.
        page.click("main a:has-text('Create instance')")
        assert page.is_checked("input[value=professional]") and "Professional" in page.inner_text("main")
        page.click("main button:has-text('Create instance')")
        page.wait_for_url(re.compile(r".*/instances/qm-.*"))
        instance_url = page.url
        instance_id = instance_url.rsplit("/", 1)[1]
        expect(page.locator("#status")).to_have_attribute("data-status", "running", timeout=60_000)
        expect(page.locator("#trading-state")).to_have_attribute("data-state", "trading", timeout=30_000)
        expect(page.locator("#status")).to_have_class(re.compile("tone-good"))
        assert page.is_disabled("button[data-action=start]") and page.is_enabled("button[data-action=stop]")
        expect(page.locator("#logs")).to_contain_text("engine started", timeout=30_000)
        expect(page.locator("#fills tbody tr td[data-label]").first).to_be_visible(timeout=30_000)
        expect(page.locator("#orders tbody tr td[data-label]").first).to_be_visible(timeout=30_000)
        expect(page.locator("#uptime")).not_to_have_text("—", timeout=30_000)
        for chart in ("#pnl-chart", "#price-chart", "#resources-chart"):
            expect(page.locator(chart + " canvas")).to_have_count(1, timeout=30_000)
        expect(page.locator("#last-active")).not_to_contain_text("T", timeout=10_000)  # not a raw ISO string
        # History survives a reload: the charts start from the portal's samples, not empty.
        time.sleep(4)
        page.reload()
        expect(page.locator("#pnl-chart canvas")).to_have_count(1, timeout=30_000)
        points = page.evaluate(
            "fetch(document.getElementById('instance').dataset.api + '/trading?days=1')"
            ".then(r => r.json()).then(b => b.history.time.length)"
        )
        assert points >= 1
        # Log search keeps the loaded history and shows only matching lines.
        expect(page.locator("#logs .line")).not_to_have_count(0, timeout=30_000)
        page.fill("#search", "engine started")
        expect(page.locator("#logs .line")).to_have_count(1, timeout=5_000)
        page.fill("#search", "")
        assert page.locator("#logs .line").count() > 1
        check_page("instance")
        page.goto(instance_url + "?tab=domains")
        check_page("instance-domains")

        # Back it up from its Backups tab.
        page.click("nav.tabs a:has-text('Backups')")
        page.click("main button:has-text('Back up now')")
        page.wait_for_selector("main table code")
        assert "taken" in page.inner_text("main")
        check_page("backups")

        # Stop, start (buttons follow the state, no metrics asked of a stopped instance).
        page.goto(instance_url)
        expect(page.locator("#status")).to_have_attribute("data-status", "running", timeout=60_000)
        metrics_calls = []
        page.on("request", lambda r: metrics_calls.append(r.url) if r.url.endswith("/metrics") else None)
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("main button:has-text('Stop')")
        expect(page.locator("#status")).to_have_attribute("data-status", "stopped", timeout=30_000)
        assert page.is_enabled("button[data-action=start]") and page.is_disabled("button[data-action=stop]")
        metrics_calls.clear()
        time.sleep(6)
        assert metrics_calls == []  # it polled /metrics every 5 s and got 409 each time
        page.click("main button:has-text('Start')")
        expect(page.locator("#status")).to_have_attribute("data-status", "running", timeout=60_000)
        expect(page.locator("#trading-state")).to_have_attribute("data-state", "trading", timeout=30_000)

        # A configuration the engine refuses: the console says it is not trading, why, and how to fix it.
        get_backend().write_files(instance_id, {"config.yaml": BAD_CONFIG})
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("main button:has-text('Restart')")
        expect(page.locator("#trading-state")).to_have_attribute("data-state", "error", timeout=60_000)
        expect(page.locator("#trading-state")).to_contain_text("configuration error")
        expect(page.locator("#trading-reason")).to_contain_text("invalid config")
        expect(page.locator("#trading-fix a")).to_be_visible()
        expect(page.locator("#logs .line[data-level=ERROR]").first).to_be_visible(timeout=30_000)
        page.select_option("#level", "ERROR")
        assert all(
            level == "ERROR"
            for level in page.locator("#logs .line").evaluate_all("lines => lines.map(l => l.dataset.level)")
        )
        page.select_option("#level", "")
        shot("instance-not-trading")
        page.goto(f"{base}/")
        assert "Not trading: configuration error" in page.inner_text("main table")
        check_page("dashboard")
        api = page.request.get(f"{base}/api/saas/instances/{instance_id}").json()
        assert (api["status"], api["trading_state"], api["trading_cause"]) == ("running", "error", "config_error")

        # The engine's own page through the hand-over (its configuration is where keys are fixed).
        handover = page.request.get(f"{base}/instances/{instance_id}/open?to=config", max_redirects=0)
        engine_url = handover.headers["location"].replace(":8000", ":" + base.rsplit(":", 1)[1])
        page.goto(engine_url)
        expect(page.locator("input[name=api_key]")).to_be_visible()
        check_page("engine-config")
        page.goto(engine_url.split("/__quantmesh")[0] + "/")
        check_page("engine-status")

        # API token, shown once.
        page.goto(f"{base}/accounts/tokens/")
        page.fill("input[name=name]", "CI-2026")  # user data: a name that reads the same in both languages
        page.click("main button:has-text('Create token')")
        assert page.inner_text("#token-value").startswith("qm_")
        check_page("tokens")

        # Notification settings: the form keeps what was typed; a bad Telegram chat id is refused.
        page.goto(f"{base}/settings/notifications")
        page.uncheck("input[value=resource_high]")
        page.click("main button:has-text('Save')")
        page.wait_for_selector("text=Notification settings saved.")
        assert not page.is_checked("input[value=resource_high]") and page.is_checked("input[value=instance_down]")
        check_page("notifications")
        page.goto(f"{base}/support")
        check_page("support")
        page.goto(f"{base}/accounts/security/")
        check_page("security")

        # On a phone: nothing wider than the screen, tables become cards.
        page.set_viewport_size(PHONE)
        phone_pages = [
            ("/", "dashboard"),
            ("/billing/", "billing"),
            (f"/instances/{instance_id}", "instance"),
            (f"/instances/{instance_id}/backups", "backups"),
            ("/accounts/tokens/", "tokens"),
            ("/accounts/security/", "security"),
            ("/settings/notifications", "notifications"),
            ("/support", "support"),
        ]
        for path, name in phone_pages:
            page.goto(base + path)
            if name == "instance":
                expect(page.locator("#pnl-chart canvas")).to_have_count(1, timeout=30_000)
            check_page(f"{name}-phone")
        page.goto(engine_url.split("/__quantmesh")[0] + "/config")
        check_page("engine-config-phone")

        # In Chinese: the same pages, every string translated.
        page.set_viewport_size(DESKTOP)
        page.goto(f"{base}/")
        with page.expect_navigation():
            page.select_option("#lang-select", "zh-hans")
        assert "控制面板" in page.content()
        for path, name in phone_pages:
            page.goto(base + path)
            if name == "instance":
                expect(page.locator("#trading-state")).to_contain_text("配置错误", timeout=30_000)
            check_page(f"{name}-zh", "zh-hans")
        page.set_viewport_size(PHONE)
        page.goto(f"{base}/instances/{instance_id}")
        check_page("instance-zh-phone", "zh-hans")
        handover = page.request.get(f"{base}/instances/{instance_id}/open?to=config", max_redirects=0)
        page.goto(handover.headers["location"].replace(":8000", ":" + base.rsplit(":", 1)[1]))
        check_page("engine-config-zh-phone", "zh-hans")
        page.goto(engine_url.split("/__quantmesh")[0] + "/")
        check_page("engine-status-zh-phone", "zh-hans")

        # Delete (with confirmation).
        page.set_viewport_size(DESKTOP)
        page.goto(instance_url)
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("main button.danger")
        page.wait_for_url(f"{base}/")
        assert problems == [], "\n".join(problems)
