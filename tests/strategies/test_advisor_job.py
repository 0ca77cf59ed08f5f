"""The advisor as a background job on a real engine (process backend) with real Celery tasks: a run
on uploaded candles and on the engine's own, its progress and report kept, apply through the engine's
validation, and a downgrade moving an adaptive instance back to the grid with notice."""

from __future__ import annotations

import pytest

from alerts.models import Alert
from instances.models import Instance
from strategies.models import AdviceRun
from tests.db import committing_db

from .conftest import candles_csv, engine_config

pytestmark = committing_db


def _advise(client, instance, **body):
    response = client.post(f"/api/saas/instances/{instance.instance_id}/advice", body, format="json")
    assert response.status_code == 202, response.content
    run = client.get(f"/api/saas/instances/{instance.instance_id}/advice/{response.json()['run_id']}").json()
    assert run["status"] == "done", run
    return run


def test_run_on_uploaded_candles_keeps_progress_and_report(customer_client, running_instance):
    csv = candles_csv()
    run = _advise(customer_client, running_instance, csv=csv, seed=3)
    assert run["source"] == "upload"
    report = run["report"]
    assert len(report["candidates"]) >= 50
    assert run["progress"] == {"done": len(report["candidates"]), "total": len(report["candidates"])}
    assert {c["kind"] for c in report["candidates"]} == {"grid", "adaptive"}
    recommended = report["candidates"][report["recommended"]]
    assert set(recommended["test"]) == {"pnl_after_fees", "fees", "fills", "max_drawdown", "peak_inventory"}
    assert all(ts >= report["split_ts"] for ts, _ in recommended["equity_curve"])
    assert report["levels"]["fixed"]["interval"] > 0 and report["levels"]["adaptive"]
    # Deterministic for a seed: the same candles and seed give the same advice.
    again = _advise(customer_client, running_instance, csv=csv, seed=3)
    assert again["report"]["candidates"] == report["candidates"]
    assert again["report"]["recommended"] == report["recommended"]
    kinds = list(running_instance.events.values_list("kind", flat=True))
    assert kinds.count("advice_requested") == 2 and kinds.count("advice_finished") == 2
    listed = customer_client.get(f"/api/saas/instances/{running_instance.instance_id}/advice").json()
    assert [r["run_id"] for r in listed] == [again["run_id"], run["run_id"]]


def test_run_on_the_engines_own_candles(customer_client, running_instance):
    run = _advise(customer_client, running_instance, candles=1000)
    assert run["source"] == "paper"  # the paper exchange's own price path
    assert run["report"]["symbol"] == "BTC/USDT" and len(run["report"]["prices"]) > 100


def test_bad_csv_is_refused_naming_the_line(customer_client, running_instance):
    bad = candles_csv().replace(",1.5\n", ",x\n", 3)
    response = customer_client.post(
        f"/api/saas/instances/{running_instance.instance_id}/advice", {"csv": bad}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_csv" and "line 2" in response.json()["error"]["message"]
    assert not AdviceRun.objects.exists()


def _adaptive_index(report) -> int:
    return next(i for i, c in enumerate(report["candidates"]) if c["kind"] == "adaptive")


def test_apply_changes_the_config_through_the_engine(customer_client, running_instance):
    run = _advise(customer_client, running_instance, csv=candles_csv())
    index = _adaptive_index(run["report"])
    url = f"/api/saas/instances/{running_instance.instance_id}/advice/{run['run_id']}/apply"
    applied = customer_client.post(url, {"candidate": index}, format="json")
    assert applied.status_code == 200, applied.content
    assert applied.json()["applied_candidate"] == index
    assert engine_config(running_instance)["strategy"] == run["report"]["candidates"][index]["strategy"]
    event = running_instance.events.filter(kind="strategy_applied").get()
    assert event.detail["strategy"] == "adaptive" and event.actor_id == running_instance.owner_id
    recommended = run["report"]["candidates"][run["report"]["recommended"]]
    assert customer_client.post(url, {}, format="json").json()["applied_candidate"] == run["report"]["recommended"]
    config = engine_config(running_instance)
    assert config["strategy"]["kind"] == recommended["kind"]
    if recommended["kind"] == "grid":
        assert config["grid"]["price_interval"] == recommended["strategy"]["grid"]["price_interval"]


def test_apply_goes_through_the_engines_validation(customer_client, running_instance):
    run = _advise(customer_client, running_instance, csv=candles_csv())
    stored = AdviceRun.objects.get(run_id=run["run_id"])
    index = _adaptive_index(stored.report)
    stored.report["candidates"][index]["strategy"]["spread"] = -1  # what the engine must refuse
    stored.save()
    before = engine_config(running_instance)
    url = f"/api/saas/instances/{running_instance.instance_id}/advice/{run['run_id']}/apply"
    refused = customer_client.post(url, {"candidate": index}, format="json")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "invalid_config" and "strategy.spread" in error["message"]
    assert engine_config(running_instance) == before
    assert not running_instance.events.filter(kind="strategy_applied").exists()


def test_downgrade_moves_an_adaptive_instance_back_to_the_grid_with_notice(
    customer, customer_client, running_instance, client
):
    run = _advise(customer_client, running_instance, csv=candles_csv())
    url = f"/api/saas/instances/{running_instance.instance_id}/advice/{run['run_id']}/apply"
    assert customer_client.post(url, {"candidate": _adaptive_index(run["report"])}, format="json").status_code == 200
    grid_before = engine_config(running_instance)["grid"]
    response = customer_client.post("/api/billing/subscriptions/update-plan", {"new_plan": "personal"}, format="json")
    assert response.status_code == 200, response.content
    config = engine_config(running_instance)
    assert config["strategy"]["kind"] == "grid" and config["grid"] == grid_before
    event = running_instance.events.filter(kind="strategy_reverted").get()
    assert event.actor is None and "no longer includes" in event.detail["reason"]
    alert = Alert.objects.get(user=customer, kind="billing", subject__contains="back to the grid")
    assert running_instance.instance_id in alert.message
    client.force_login(customer)
    page = client.get(f"/instances/{running_instance.instance_id}/strategy", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="strategy-notice"' in page and 'id="plan-refusal"' in page
    # Applying an adaptive candidate is refused now, naming the plan.
    refused = customer_client.post(url, {"candidate": _adaptive_index(run["report"])}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["details"]["plan"] == "professional"
    assert Instance.objects.get(pk=running_instance.pk).status == "running"


def test_instance_stopped_during_the_downgrade_goes_back_to_the_grid_when_it_starts(customer_client, running_instance):
    run = _advise(customer_client, running_instance, csv=candles_csv())
    url = f"/api/saas/instances/{running_instance.instance_id}/advice/{run['run_id']}/apply"
    assert customer_client.post(url, {"candidate": _adaptive_index(run["report"])}, format="json").status_code == 200
    base = f"/api/saas/instances/{running_instance.instance_id}"
    assert customer_client.post(f"{base}/stop").json()["status"] == "stopped"
    assert (
        customer_client.post(
            "/api/billing/subscriptions/update-plan", {"new_plan": "personal"}, format="json"
        ).status_code
        == 200
    )
    assert not running_instance.events.filter(kind="strategy_reverted").exists()
    assert customer_client.post(f"{base}/start").json()["status"] == "running"
    assert engine_config(running_instance)["strategy"]["kind"] == "grid"
    assert running_instance.events.filter(kind="strategy_reverted").count() == 1


@pytest.mark.parametrize("plan", ["personal", "professional"])
def test_the_instance_proxy_gates_adaptive_config_writes(customer, customer_client, running_instance, subscribe, plan):
    import json

    from accounts.services import api_token_create

    from ..live_server import http_request, live_portal

    subscribe(customer, plan)
    _, token = api_token_create(user=customer)
    host = f"instance-{running_instance.slug}.localhost"
    config = engine_config(running_instance)
    adaptive = {**config, "strategy": {"kind": "adaptive"}}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with live_portal() as (base, _):
        response, body = http_request(
            base, host, "/api/config", headers, method="PUT", body=json.dumps({"config": adaptive})
        )
        if plan == "personal":
            assert response.status == 403, body
            error = json.loads(body)["error"]
            assert error["code"] == "plan_upgrade_required" and "Professional plan" in error["message"]
            assert engine_config(running_instance)["strategy"]["kind"] == "grid"
            grid = {**config, "strategy": {"kind": "grid"}}
            response, body = http_request(
                base, host, "/api/config", headers, method="PUT", body=json.dumps({"config": grid})
            )
            assert response.status == 200, body
        else:
            assert response.status == 200, body
            assert engine_config(running_instance)["strategy"]["kind"] == "adaptive"


def test_the_engine_itself_refuses_adaptive_to_a_plan_without_it(customer_client, running_instance, runtime):
    """Traefik routes engine config writes straight to the engine (forward-auth only), past the
    portal's proxy: the engine holds the write against the plan the portal wrote into platform.yaml."""
    import yaml

    from instances.engine_client import engine_request

    def platform() -> dict:
        return yaml.safe_load(runtime.read_file(running_instance.instance_id, "platform.yaml"))

    def direct_write(config: dict):
        return engine_request(
            running_instance, "/api/config", backend=runtime, timeout=10, method="PUT", json_body={"config": config}
        )

    assert platform()["adaptive_strategy"] is True  # Professional
    config = engine_config(running_instance)
    response = customer_client.post("/api/billing/subscriptions/update-plan", {"new_plan": "personal"}, format="json")
    assert response.status_code == 200, response.content
    assert platform()["adaptive_strategy"] is False  # rewritten with the plan, in place
    refused = direct_write({**config, "strategy": {"kind": "adaptive"}})
    assert refused.status == 400, refused.body
    error = refused.json()["error"]
    assert error["code"] == "invalid_config"
    assert error["message"].startswith("strategy.kind: adaptive strategy not included in the plan")
    assert engine_config(running_instance)["strategy"]["kind"] == "grid"
    assert direct_write({**config, "strategy": {"kind": "grid", "spread": 3}}).status == 200
