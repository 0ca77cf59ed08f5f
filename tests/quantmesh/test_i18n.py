"""The console speaks Simplified Chinese and English, following the browser, switchable."""

from __future__ import annotations

from pathlib import Path

import polib
import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db
PO = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


def test_follows_the_browser(client, user):
    client.force_login(user)
    chinese = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    assert "控制面板" in chinese.content.decode() and 'lang="zh-hans"' in chinese.content.decode()
    english = client.get("/", HTTP_ACCEPT_LANGUAGE="en-US")
    assert b"Dashboard" in english.content


def test_switch_language(client):
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    assert "无需自建服务器" in client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert b"without running servers" in client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN").content


def test_every_console_string_is_translated():
    catalogue = polib.pofile(str(PO))
    untranslated = [entry.msgid for entry in catalogue if not entry.translated() and not entry.obsolete]
    assert untranslated == []
    assert Path(str(PO).replace(".po", ".mo")).exists()  # compiled and committed: no gettext needed to run


PAGES = [
    "/",
    "/support",
    "/billing/",
    "/instances/new",
    "/accounts/tokens/",
    "/accounts/security/",
    "/settings/notifications",
    "/accounts/security/2fa/enable/",
]
ANONYMOUS_PAGES = ["/", "/support", "/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"]


def _instance(owner):
    from billing.models import Plan
    from instances.models import EngineSample, Instance

    instance = Instance.objects.create(
        instance_id="qm-i18n00-1700000000",
        slug="i18n00",
        owner=owner,
        plan=Plan.objects.get(code="professional"),
        status="running",
        trading_state="paused",
        trading_cause="stop_loss,daily_loss_limit",
        trading_reason="risk control paused buying",
        image="x",
        proxy_secret_encrypted="x",
    )
    EngineSample.objects.create(instance=instance, realized_pnl=12.5, unrealized_pnl=-2.0)
    return instance


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_no_untranslated_text_on_the_console_pages(client, user, subscribe, language):
    """Every page the journey visits, in both languages: no English left on a Chinese page (plan names,
    statuses, units in words, buttons, confirmations), no Chinese on an English one."""
    from tests.i18n_check import untranslated

    subscribe(user, "professional")
    instance = _instance(user)
    for path in ANONYMOUS_PAGES:
        page = client.get(path, HTTP_ACCEPT_LANGUAGE=language)
        assert page.status_code == 200, path
        assert untranslated(page.content.decode(), language) == [], (language, path)
    client.force_login(user)
    paths = PAGES + [
        f"/instances/{instance.instance_id}",
        f"/instances/{instance.instance_id}/backups",
        f"/instances/{instance.instance_id}?tab=domains",
        f"/instances/{instance.instance_id}?tab=autoscaling",
        f"/instances/{instance.instance_id}/strategy",
    ]
    for path in paths:
        page = client.get(path, HTTP_ACCEPT_LANGUAGE=language)
        assert page.status_code == 200, path
        assert untranslated(page.content.decode(), language) == [], (language, path)


def test_chinese_uses_the_polite_you_and_full_width_punctuation():
    import re

    catalogue = polib.pofile(str(PO))
    for entry in catalogue:
        for text in [entry.msgstr, *entry.msgstr_plural.values()]:
            assert "你" not in text, entry.msgid
            assert not re.search(r"[\u4e00-\u9fff][,:;?!()]|[,:;?!(][\u4e00-\u9fff]", text), (entry.msgid, text)


def test_support_page_in_both_languages(client):
    english = client.get("/support", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "support@quantmesh.io" in english and "Frequently asked questions" in english
    chinese = client.get("/support", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "常见问题" in chinese and "如何配置交易所 API？" in chinese


def test_known_engine_reasons_are_translated_and_unknown_ones_kept():
    """The engine explains itself in English; the console shows the reasons it knows in the viewer's
    language (the details inside stay the engine's), and any other reason as the engine wrote it."""
    from django.utils import translation

    from instances.presentation import reason_text

    raw = "exchange error, retrying in 8 s: ExchangeNotAvailable: okx GET /api/v5/public/time"
    with translation.override("zh-hans"):
        assert reason_text(raw) == "交易所出错，8 秒后重试：ExchangeNotAvailable: okx GET /api/v5/public/time"
        assert reason_text("risk control (stop_loss) paused buying of BTC/USDT") == "风控（止损）已暂停 BTC/USDT 的买入"
        assert reason_text("something new") == "something new"
    with translation.override("en"):
        assert reason_text(raw) == raw
