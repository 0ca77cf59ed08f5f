"""Tenant isolation across the whole REST API: every endpoint of the OpenAPI schema, called by one
customer with another customer's ids, answers 404 (never 403, never data), and no list or page of
one customer shows anything of the other."""

from __future__ import annotations

import json
import re

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.services import api_token_create
from alerts.models import Alert
from backups.models import Backup
from instances.models import CustomDomain, Instance
from quantmesh.crypto import encrypt
from strategies.models import AdviceRun

pytestmark = pytest.mark.django_db


def _client(user) -> APIClient:
    _, raw = api_token_create(user=user, name="isolation")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def victim(make_user, subscribe):
    """A customer with an instance, a backup, a custom domain, an alert, an advisor run and a token."""
    user = make_user(email="victim@example.com")
    subscribe(user, "professional")
    instance = Instance.objects.create(
        instance_id="qm-victim-1700000000",
        slug="victim",
        owner=user,
        plan=user.subscription.plan,
        status="running",
        image="x",
        proxy_secret_encrypted=encrypt("victim-engine-secret"),
    )
    backup = Backup.objects.create(instance=instance, owner=user, kind="daily", status="ok", storage_key="k")
    CustomDomain.objects.create(instance=instance, domain="victim.example.com")
    Alert.objects.create(user=user, instance=instance, kind="backup_failed", subject="victim alert", message="m")
    advice = AdviceRun.objects.create(
        run_id="adv_victim", instance=instance, requested_by=user, status=AdviceRun.Status.DONE,
        report={"candidates": []},
    )
    token, _ = api_token_create(user=user, name="victim-token")
    return {"user": user, "instance": instance, "backup": backup, "advice": advice, "token": token}


def _schema_paths(tmp_path) -> dict:
    out = tmp_path / "schema.json"
    call_command("spectacular", "--format", "openapi-json", "--file", str(out))
    return json.loads(out.read_text())["paths"]


def _answers(client, url: str, operations: dict):
    """(method, response) for each of the schema's operations on `url`, called with an empty body."""
    for method in ("get", "post", "put", "delete"):
        if method in operations:
            yield method, (client.get(url) if method == "get" else getattr(client, method)(url, {}, format="json"))


def test_every_endpoint_with_another_customers_ids_is_not_found(victim, make_user, subscribe, tmp_path):
    attacker = make_user(email="attacker@example.com")
    subscribe(attacker, "enterprise")
    client = _client(attacker)
    values = {
        "instance_id": victim["instance"].instance_id,
        "backup_id": victim["backup"].backup_id,
        "domain": "victim.example.com",
        "kind": "trades",
        "token_id": str(victim["token"].pk),
        "run_id": victim["advice"].run_id,
    }
    tried = 0
    for path, operations in _schema_paths(tmp_path).items():
        if "{" not in path:
            continue
        missing = set(re.findall(r"{(\w+)}", path)) - set(values)
        assert not missing, f"{path}: give the victim something for {sorted(missing)}"
        url = path.format(**values)
        for method, response in _answers(client, url, operations):
            tried += 1
            assert response.status_code == 404, (method, url, response.status_code)
            body = response.content.decode()
            assert "victim@example.com" not in body and "victim-engine-secret" not in body, (method, url)
    assert tried >= 15
    # Nothing was changed by all that.
    instance = Instance.objects.get(pk=victim["instance"].pk)
    assert (instance.status, instance.desired_state) == ("running", "running")
    assert Backup.objects.filter(pk=victim["backup"].pk).exists()
    assert CustomDomain.objects.filter(domain="victim.example.com").exists()
    victim["token"].refresh_from_db()
    assert victim["token"].revoked_at is None
    victim["advice"].refresh_from_db()
    assert victim["advice"].applied_at is None


def test_another_customers_child_ids_under_ones_own_instance_are_not_found(victim, make_user, subscribe, tmp_path):
    """A backup, domain or advisor run of the victim, named under the attacker's own instance."""
    attacker = make_user(email="attacker@example.com")
    subscribe(attacker, "enterprise")
    own = Instance.objects.create(
        instance_id="qm-attacker-1700000000", slug="attack", owner=attacker, plan=attacker.subscription.plan,
        status="running", image="x", proxy_secret_encrypted=encrypt("attacker-engine-secret"),
    )
    client = _client(attacker)
    child_ids = {
        "backup_id": victim["backup"].backup_id,
        "domain": "victim.example.com",
        "run_id": victim["advice"].run_id,
    }
    tried = 0
    for path, operations in _schema_paths(tmp_path).items():
        names = set(re.findall(r"{(\w+)}", path))
        if "instance_id" not in names or not names & set(child_ids):
            continue
        url = path.format(instance_id=own.instance_id, kind="trades", **child_ids)
        for method, response in _answers(client, url, operations):
            tried += 1
            assert response.status_code == 404, (method, url, response.status_code)
    assert tried >= 5
    assert Backup.objects.filter(pk=victim["backup"].pk).exists()
    assert CustomDomain.objects.filter(domain="victim.example.com", instance=victim["instance"]).exists()
    victim["advice"].refresh_from_db()
    assert victim["advice"].applied_at is None


def test_no_list_shows_another_customers_things(victim, make_user, subscribe, tmp_path):
    attacker = make_user(email="attacker@example.com")
    subscribe(attacker, "enterprise")
    client = _client(attacker)
    for path, operations in _schema_paths(tmp_path).items():
        if "{" in path or "get" not in operations:
            continue
        response = client.get(path)
        assert response.status_code == 200, path
        body = response.content.decode()
        for secret in ("qm-victim", "victim@example.com", "victim.example.com", "victim alert", "victim-token"):
            assert secret not in body, (path, secret)
