"""The Strategy tab with a finished advisor run (a real advisor report): the recommendation with its
numbers, the honest line, Apply, the charts' places, in both languages with nothing left untranslated;
a failed and a running run; the page's script is a file (strict CSP)."""

from __future__ import annotations

import pytest
from django.utils import timezone
from quantmesh_engine.advisor import advise, candles_from_csv

from billing.models import Plan
from instances.models import Instance
from strategies.models import AdviceRun
from tests.i18n_check import untranslated

from .conftest import candles_csv

CONFIG = {"exchange": {"name": "paper"}, "symbols": ["BTC/USDT"], "grid": {"price_interval": 150.0, "buy_window": 5}}


@pytest.fixture(scope="module")
def report():
    candles = candles_from_csv(candles_csv())
    data = advise(candles, config=CONFIG, symbol="BTC/USDT", fee_rate=0.001, seed=1).to_dict()
    data.update(symbol="BTC/USDT", prices=[[c.ts, c.close] for c in candles], current_grid=CONFIG["grid"])
    data["levels"] = {"fixed": {"center": candles[-1].close, "interval": 150.0, "layers": 5}, "adaptive": []}
    return data


@pytest.fixture
def instance(user, subscribe):
    subscribe(user, "professional")
    return Instance.objects.create(
        instance_id="qm-strat0-1700000000",
        slug="strat0",
        owner=user,
        plan=Plan.objects.get(code="professional"),
        status="running",
        image="x",
        proxy_secret_encrypted="x",
    )


def _run(instance, status, **fields):
    return AdviceRun.objects.create(
        run_id=f"adv-{status}00000000", instance=instance, status=status, params={"seed": 1}, **fields
    )


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_finished_run_in_both_languages(client, user, instance, report, language):
    run = _run(instance, "done", source="upload", report=report, finished_at=timezone.now())
    client.force_login(user)
    page = client.get(f"/instances/{instance.instance_id}/strategy?run={run.run_id}", HTTP_ACCEPT_LANGUAGE=language)
    assert page.status_code == 200
    text = page.content.decode()
    assert untranslated(text, language) == []
    for part in ('id="recommendation"', 'id="honest-line"', 'id="apply"', "advice-price-chart", "advice-equity-chart"):
        assert part in text
    recommended = report["candidates"][report["recommended"]]
    assert f"{recommended['test']['pnl_after_fees']:.2f}" in text
    assert text.count('name="candidate"') == len(report["candidates"])
    assert "<script>" not in text and "js/strategy.js" in text
    name = "自适应策略 · AI 调优" if language == "zh-hans" else "Adaptive strategy · AI-tuned"
    assert name in text


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_running_and_failed_runs(client, user, instance, language):
    _run(instance, "running", progress_done=7, progress_total=50)
    failed = _run(instance, "failed", error="candles: 12 given, the advisor needs at least 500")
    client.force_login(user)
    running = client.get(
        f"/instances/{instance.instance_id}/strategy?run=adv-running00000000", HTTP_ACCEPT_LANGUAGE=language
    )
    assert 'id="run-progress"' in running.content.decode() and "7 / 50" in running.content.decode()
    assert untranslated(running.content.decode(), language) == []
    page = client.get(f"/instances/{instance.instance_id}/strategy?run={failed.run_id}").content.decode()
    assert "needs at least 500" in page
