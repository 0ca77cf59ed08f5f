"""A customer generates a Python client from the live schema with openapi-python-client and plays the
manual's walkthrough with it against a real portal: login, plans, subscribe, create, list, detail,
metrics, logs, stop, start, restart, export through the instance URL, delete, cancel. The client
raises on any status code the schema does not document, and parses every body with the schema's
models, so a schema that says something else than the API fails here."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import httpx

from tests.db import committing_db
from tests.factories import DEFAULT_PASSWORD
from tests.integrator import integrator_portal  # noqa: F401

pytestmark = committing_db

# The backup download is application/gzip, which the generator reads as bytes when told so.
GENERATOR_CONFIG = "content_type_overrides:\n  application/gzip: application/octet-stream\n"


def generate_client(base: str, where: Path, package: str = "qm_generated_client"):
    """Generate (offline) and import a client from the portal's live schema; returns (package, output)."""
    schema = where / "schema.json"
    schema.write_bytes(urllib.request.urlopen(f"{base}/api/schema/?format=json", timeout=30).read())
    config = where / "generator.yaml"
    config.write_text(GENERATOR_CONFIG)
    venv_bin = str(Path(sys.executable).parent)
    result = subprocess.run(
        [
            f"{venv_bin}/openapi-python-client",
            "generate",
            "--path",
            str(schema),
            "--meta",
            "none",
            "--output-path",
            str(where / package),
            "--config",
            str(config),
        ],
        env={**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}"},  # its ruff post-hook
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module(package), output
    finally:
        sys.path.remove(str(where))


def _call(module, *args, **kwargs):
    """One call through the generated module; its documented success, parsed by the generated model."""
    response = module.sync_detailed(*args, **kwargs)
    assert response.status_code < 300, (module.__name__, response.status_code, response.content[:300])
    return response


def test_manual_walkthrough_with_a_generated_client(integrator_portal, user, tmp_path):  # noqa: F811
    base = integrator_portal
    qm, output = generate_client(base, tmp_path)
    assert "Warning" not in output, output
    auth = importlib.import_module(f"{qm.__name__}.api.auth")
    billing = importlib.import_module(f"{qm.__name__}.api.billing")
    saas = importlib.import_module(f"{qm.__name__}.api.saas")
    models = importlib.import_module(f"{qm.__name__}.models")

    def op(group, name):
        return importlib.import_module(f"{group.__name__}.{name}")

    anonymous = qm.Client(base_url=base, raise_on_unexpected_status=True, timeout=httpx.Timeout(120))
    # Login: the answer's shape as the README shows it.
    login = _call(
        op(auth, "auth_login"),
        client=anonymous,
        body=models.LoginInputRequest(email=user.email, password=DEFAULT_PASSWORD),
    ).parsed
    assert isinstance(login, models.TokenOutput) and login.token.startswith("qm_")
    refused = op(auth, "auth_login").sync_detailed(
        client=anonymous, body=models.LoginInputRequest(email=user.email, password="wrong")
    )
    assert refused.status_code == 401 and refused.parsed.error.code == "invalid_credentials"
    client = qm.AuthenticatedClient(
        base_url=base, token=login.token, raise_on_unexpected_status=True, timeout=httpx.Timeout(120)
    )

    plans = _call(op(billing, "billing_plans_list"), client=anonymous).parsed
    assert {"personal", "professional", "enterprise"} <= {p.code for p in plans}
    subscribed = _call(
        op(billing, "billing_subscription_create"),
        client=client,
        body=models.SubscriptionCreateInputRequest(plan="professional"),
    )
    assert subscribed.status_code == 201 and subscribed.parsed.plan == "professional"

    created = _call(
        op(saas, "instances_create"), client=client, body=models.InstanceCreateInputRequest(plan="professional")
    )
    instance = created.parsed
    assert created.status_code == 201 and instance.status == "running", instance
    assert created.headers["X-API-Version"] == "1"
    instance_id = instance.instance_id

    listed = _call(op(saas, "instances_list"), client=client)
    assert [i.instance_id for i in listed.parsed] == [instance_id]
    assert "Link" not in listed.headers  # one page
    assert _call(op(saas, "instances_retrieve"), instance_id, client=client).parsed.plan == "professional"
    metrics = _call(op(saas, "instances_metrics"), instance_id, client=client).parsed
    assert metrics.instance_id == instance_id and metrics.cpu_limit > 0 and metrics.memory_limit > 0
    logs = _call(op(saas, "instances_logs"), instance_id, client=client, lines=100).parsed
    assert logs.instance_id == instance_id and logs.lines

    for action, status in (
        ("instances_stop", "stopped"),
        ("instances_start", "running"),
        ("instances_restart", "running"),
    ):
        assert _call(op(saas, action), instance_id, client=client).parsed.status == status, action

    # Export through the instance URL (the manual's curl line), with the token the client holds.
    host = urlparse(instance.url).hostname
    trades = httpx.get(
        f"{base}/api/export/trades", headers={"Host": host, "Authorization": f"Bearer {login.token}"}, timeout=30
    )
    assert trades.status_code == 200 and trades.text.startswith("time,symbol,side"), trades.text[:200]
    # ...and through the portal's API.
    exported = _call(op(saas, "instances_export"), instance_id, "trades", client=client)
    assert exported.content.startswith(b"time,symbol,side")

    events = _call(op(saas, "instances_events"), instance_id, client=client).parsed
    kinds = [e.kind for e in events]
    assert {"created", "stop_requested", "stopped", "start_requested", "restart_requested", "running"} <= set(kinds)
    assert all(e.instance_id == instance_id for e in events)

    deleted = _call(op(saas, "instances_delete"), instance_id, client=client)
    assert deleted.status_code == 200 and deleted.parsed.status == "deleted"
    missing = op(saas, "instances_retrieve").sync_detailed(instance_id, client=client)
    assert missing.status_code == 404 and missing.parsed.error.code == "not_found"

    cancelled = _call(
        op(billing, "billing_subscription_cancel"),
        client=client,
        body=models.SubscriptionCancelInputRequest(immediately=True),
    ).parsed
    assert cancelled.status in ("canceled", "none"), cancelled
    account_events = _call(op(saas, "events_list"), client=client).parsed
    assert account_events[0].kind == "deleted" and account_events[0].instance_id == instance_id
