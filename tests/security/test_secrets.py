"""Exchange secrets never leave the engine's (encrypted) secrets file: after a customer stores known secrets and
uses the instance (backup, restart, exports), no API answer, console page, log line, audit row,
backup file, metrics page or `docker inspect` output contains them."""

from __future__ import annotations

import json
import logging
import urllib.request

import pytest

from accounts.models import SecurityEvent
from alerts.models import Alert
from backups import services as backup_services
from backups.models import Backup
from billing.models import BillingEvent
from instances.engine_client import PROXY_SECRET_HEADER
from instances.models import Instance, InstanceEvent
from quantmesh.crypto import decrypt
from tests.db import committing_db

pytestmark = committing_db

API_KEY = "AKIA-known-api-key-7f3e9a1c55"
SECRET = "known-exchange-secret-c0ffee-4242-deadbeef"
PASSPHRASE = "known-passphrase-9911"
KNOWN = (API_KEY, SECRET, PASSPHRASE)


def _put_secrets(instance: Instance, backend) -> None:
    host, port = backend.endpoint(instance.instance_id)
    body = {"secrets": {"api_key": API_KEY, "secret": SECRET, "passphrase": PASSPHRASE}}
    request = urllib.request.Request(  # noqa: S310 (loopback)
        f"http://{host}:{port}/api/config",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={PROXY_SECRET_HEADER: decrypt(instance.proxy_secret_encrypted), "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).read()  # noqa: S310


def _hits(text: str) -> list[str]:
    return [secret for secret in KNOWN if secret in text]


@pytest.mark.parametrize("runtime", ["docker", "swarm"], indirect=True)
def test_known_secrets_appear_nowhere(runtime, customer, customer_client, create_instance, client, caplog, settings):
    caplog.set_level(logging.DEBUG)
    instance_id = create_instance()["instance_id"]
    instance = Instance.objects.get(instance_id=instance_id)
    _put_secrets(instance, runtime)
    backup = backup_services.backup_create(instance=instance, kind="manual")
    assert backup.status == "ok"
    assert customer_client.post(f"/api/saas/instances/{instance_id}/restart").status_code == 200

    found = {}
    base = f"/api/saas/instances/{instance_id}"
    for path in (
        "/api/saas/instances",
        base,
        f"{base}/logs?lines=1000",
        f"{base}/metrics",
        f"{base}/export/config",
        f"{base}/export/trades",
        f"{base}/backups",
        f"{base}/domains",
        "/api/saas/alerts",
        "/api/auth/me",
        "/api/billing/subscriptions",
    ):
        response = customer_client.get(path)
        assert response.status_code == 200, path
        content = b"".join(response.streaming_content) if response.streaming else response.content
        found[path] = _hits(content.decode(errors="replace"))
    download = customer_client.get(f"{base}/backups/{backup.backup_id}/download")
    found["backup file"] = _hits(b"".join(download.streaming_content).decode("latin-1"))
    client.force_login(customer)
    for page in ("/", f"/instances/{instance_id}", f"/instances/{instance_id}/backups", "/billing/"):
        found[page] = _hits(client.get(page).content.decode())
    found["/metrics"] = _hits(client.get("/metrics").content.decode())
    found["engine metrics"] = _hits(client.get(f"/internal/engine-metrics/{instance_id}").content.decode())
    if runtime.name == "swarm":
        service = runtime.client.api.inspect_service(runtime.service_name(instance_id))
        found["docker service inspect"] = _hits(json.dumps(service))
        container = runtime.task_container(instance_id)
    else:
        container = runtime.client.containers.get(runtime.container_name(instance_id))
    found["docker inspect"] = _hits(json.dumps(runtime.client.api.inspect_container(container.id)))
    found["docker logs"] = _hits(container.logs().decode(errors="replace"))
    found["audit rows"] = _hits(
        json.dumps(
            [
                list(InstanceEvent.objects.values("kind", "detail")),
                list(BillingEvent.objects.values("kind", "detail")),
                list(SecurityEvent.objects.values("kind", "detail")),
                list(Alert.objects.values("subject", "message")),
                list(Backup.objects.values("manifest", "error")),
            ],
            default=str,
        )
    )
    found["portal logs"] = _hits("\n".join(record.getMessage() for record in caplog.records))
    assert {where: hits for where, hits in found.items() if hits} == {}
    # The secrets are there, where they belong: sealed in the engine's secrets file, under its own key.
    from cryptography.fernet import Fernet

    from instances.services import instance_secrets_key
    from tests.waiting import wait_for

    # (on swarm the restarted task's container may be a moment away)
    sealed = wait_for(lambda: runtime.read_file(instance_id, "secrets.enc"), 20, "the sealed secrets file", 0.2)
    assert SECRET.encode() in Fernet(instance_secrets_key(Instance.objects.get(pk=instance.pk))).decrypt(sealed)
