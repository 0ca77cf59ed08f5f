"""The Strategy tab in headless Chromium against a real daphne, a real Celery worker on the Redis
broker and a real engine (process backend): a Professional customer starts an advisor run on the paper
exchange's own prices, sees it queued with its progress, then (once a worker takes it) the report
with its table and uPlot charts, applies the recommendation and the engine's config changes; a
Personal (starter) customer sees the upgrade message naming Professional and no way to start a run.
Headlines in English and Chinese."""

from __future__ import annotations

import os

from django.conf import settings
from django.db import connection
from playwright.sync_api import expect

from billing.models import Plan
from instances.models import Instance
from strategies.models import AdviceRun
from tests.db import committing_db

from .. import live_server
from ..conftest import require_service
from ..instances.test_worker_crash import start_worker
from .conftest import engine_config

pytestmark = committing_db
WAIT_MS = 60_000


def _worker_env(runtime) -> dict:
    """A worker on the broker, the test database and this test's engines."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quantmesh.settings.test",
        "DATABASE_URL": live_server.test_database_url(),
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "QM_RUNTIME_BACKEND": runtime.name,
        "QM_RUNTIME_SCOPE": settings.QM_RUNTIME_SCOPE,
        "QM_PROCESS_ROOT": str(settings.QM_PROCESS_ROOT),
    }


def _signed_in(browser, base: str, user, password: str, locale: str):
    """A browser context of `user`, signed in through the login form, in `locale`."""
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = []  # console errors, CSP violations and uncaught exceptions
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())  # Apply asks first (data-confirm)
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/**")
    assert "/accounts/login" not in page.url
    return context, page, problems


def test_professional_runs_the_advisor_and_applies_it(browser, customer, running_instance, password, runtime):
    require_service(
        bool(settings.REDIS_URL) and connection.vendor == "postgresql",
        "the live portal queues the advisor run on Redis for a real worker sharing the PostgreSQL test database",
    )
    tab = f"/instances/{running_instance.instance_id}/strategy"
    worker = None
    # Tasks go through the broker (not run inside the request), so the queued run and its progress show.
    with live_server.live_portal(CELERY_TASK_ALWAYS_EAGER="0") as (base, _):
        context, page, problems = _signed_in(browser, base, customer, password, "en-US")
        try:
            page.goto(base + tab)
            expect(page.locator("#feature-title")).to_have_text("Adaptive strategy · AI-tuned")
            expect(page.locator("#plan-refusal")).to_have_count(0)
            page.fill("#advisor-candles", "500")  # the smallest study: fast
            page.click("#advisor-form button[type=submit]")
            page.wait_for_url(f"{base}{tab}?run=*")
            # No worker yet: the run waits, and the page says it is testing, with a progress bar.
            expect(page.locator("#run-progress-line")).to_contain_text("Testing the candidates")
            expect(page.locator("#run-progress")).to_have_count(1)
            run = AdviceRun.objects.get(instance=running_instance)
            assert run.status == AdviceRun.Status.QUEUED and run.params["limit"] == 500
            worker = start_worker(_worker_env(runtime))
            # The page follows the run and reloads with the report once the worker has done it.
            expect(page.locator("#candidates tbody tr").first).to_be_visible(timeout=WAIT_MS)
            run.refresh_from_db()
            assert run.status == AdviceRun.Status.DONE and run.source == "paper"
            assert run.progress_done == run.progress_total > 0
            expect(page.locator("#candidates tbody tr")).to_have_count(len(run.report["candidates"]))
            expect(page.locator("#recommendation")).to_contain_text("On the held-out prices")
            expect(page.locator("#honest-line")).to_be_visible()
            for chart in ("#advice-price-chart", "#advice-equity-chart"):
                expect(page.locator(f"{chart} .uplot canvas")).to_have_count(1)
            recommended = run.report["candidates"][run.report["recommended"]]
            page.click("#apply")
            expect(page.locator(".messages .message.success")).to_contain_text("Applied:")
            config = engine_config(running_instance)
            assert config["strategy"]["kind"] == recommended["kind"]
            if recommended["kind"] == "grid":
                assert config["grid"]["price_interval"] == recommended["strategy"]["grid"]["price_interval"]
            run.refresh_from_db()
            assert run.applied_candidate == run.report["recommended"]
            expect(page.locator("#runs")).to_contain_text("applied")
            assert problems == []
            # The same tab in Chinese.
            chinese = browser.new_context(locale="zh-CN", storage_state=context.storage_state())
            zh = chinese.new_page()
            zh.goto(base + tab)
            expect(zh.locator("#feature-title")).to_have_text("自适应策略 · AI 调优")
            expect(zh.locator("#advisor-title")).to_have_text("运行策略顾问")
            expect(zh.locator("#recommendation h3")).to_have_text("推荐")
            chinese.close()
        finally:
            context.close()
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=10)


def test_starter_sees_the_upgrade_message_naming_professional_and_no_start(browser, make_user, subscribe, password):
    starter = make_user()
    subscribe(starter, "personal")
    instance = Instance.objects.create(
        instance_id="qm-start0-1700000000",
        slug="start0",
        owner=starter,
        plan=Plan.objects.get(code="personal"),
        status="running",
        image="x",
        proxy_secret_encrypted="x",
    )
    with live_server.live_portal() as (base, _):
        for locale, headline, refusal in [
            (
                "en-US",
                "Adaptive strategy · AI-tuned",
                "comes with the Professional plan and above; your plan: Personal",
            ),
            ("zh-CN", "自适应策略 · AI 调优", "包含在专业版及更高套餐中；您的套餐：个人版"),
        ]:
            context, page, problems = _signed_in(browser, base, starter, password, locale)
            try:
                page.goto(f"{base}/instances/{instance.instance_id}/strategy")
                expect(page.locator("#feature-title")).to_have_text(headline)
                expect(page.locator("#plan-refusal")).to_contain_text(refusal)
                expect(page.locator("#plan-refusal a")).to_have_attribute("href", "/billing/")
                expect(page.locator("#advisor-form")).to_have_count(0)
                expect(page.locator("main form button[type=submit]")).to_have_count(0)  # nothing to start or apply
                assert problems == []
            finally:
                context.close()
