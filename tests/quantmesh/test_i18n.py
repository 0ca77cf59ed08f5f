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
