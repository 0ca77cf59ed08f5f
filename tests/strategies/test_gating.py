"""Plan gating: only plans with `ai_strategy` may run the advisor or select the adaptive strategy;
everyone else gets 403 naming the plan that includes it (API, console and the instance proxy)."""

from __future__ import annotations

import json

import pytest
import yaml

from billing.models import Plan
from instances.models import Instance
from instances.services.converge import instance_spec
from quantmesh.crypto import encrypt
from strategies.gating import selects_adaptive


def _instance(owner, plan="personal", slug="gate00"):
    return Instance.objects.create(
        instance_id=f"qm-{slug}-1700000000",
        slug=slug,
        owner=owner,
        plan=Plan.objects.get(code=plan),
        status="running",
        image="x",
        proxy_secret_encrypted="x",
    )


@pytest.mark.django_db
@pytest.mark.parametrize("plan", ["personal", None])  # a paid plan without the feature, and the free trial
def test_api_refuses_the_advisor_naming_the_plan(user, api_client, subscribe, plan):
    if plan:
        subscribe(user, plan)
    instance = _instance(user)
    response = api_client.post(f"/api/saas/instances/{instance.instance_id}/advice", {}, format="json")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "plan_upgrade_required"
    assert error["details"]["plan"] == "professional" and error["details"]["feature"] == "ai_strategy"
    assert "Professional plan" in error["message"]
    assert not instance.advice_runs.exists()


@pytest.mark.django_db
def test_console_refuses_the_advisor_naming_the_plan(client, user, subscribe):
    subscribe(user, "personal")
    instance = _instance(user)
    client.force_login(user)
    page = client.get(f"/instances/{instance.instance_id}/strategy", HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="plan-refusal"' in text and "Professional plan" in text and 'id="advisor-form"' not in text
    refused = client.post(
        f"/instances/{instance.instance_id}/strategy", {"action": "start"}, HTTP_ACCEPT_LANGUAGE="zh-hans"
    )
    assert refused.status_code == 403
    assert "专业版" in refused.content.decode()
    assert not instance.advice_runs.exists()


@pytest.mark.django_db
def test_professional_sees_the_advisor(client, user, subscribe):
    subscribe(user, "professional")
    instance = _instance(user, "professional")
    client.force_login(user)
    text = client.get(f"/instances/{instance.instance_id}/strategy").content.decode()
    assert 'id="advisor-form"' in text and 'id="plan-refusal"' not in text


def test_config_writes_that_select_adaptive_are_recognised():
    def api(config):
        return selects_adaptive(content_type="application/json", body=json.dumps({"config": config}).encode())

    assert api({"strategy": {"kind": "adaptive", "spread": 2}})
    assert not api({"strategy": {"kind": "grid"}})
    assert not api({"grid": {"price_interval": 150}})
    assert not selects_adaptive(content_type="application/json", body=b"{not json")
    form = "application/x-www-form-urlencoded"
    assert selects_adaptive(content_type=form, body=b"exchange=paper&strategy_kind=adaptive&symbols=BTC%2FUSDT")
    assert not selects_adaptive(content_type=form, body=b"exchange=paper&strategy_kind=grid")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "plan, included", [("personal", False), ("professional", True), ("enterprise", True), (None, False)]
)
def test_the_engines_platform_file_says_whether_the_plan_includes_the_adaptive_strategy(
    user, subscribe, plan, included
):
    """The engine refuses `strategy.kind: adaptive` itself (a write that bypasses the portal's proxy)
    by what the portal writes here: the owner's entitlements (None: the free trial)."""
    if plan:
        subscribe(user, plan)
    instance = _instance(user)
    instance.proxy_secret_encrypted = encrypt("proxy-secret")
    platform = yaml.safe_load(instance_spec(instance).files["platform.yaml"])
    assert platform["adaptive_strategy"] is included
