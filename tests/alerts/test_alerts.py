"""Alerts end to end: each event from its real source to an e-mail and a Telegram message (a Bot API
stand-in on loopback), de-duplicated, retried, and following the user's settings."""

from __future__ import annotations

import json
import urllib.request

import pytest
from django.core import mail

from alerts import services
from alerts.models import Alert, AlertKind
from backups.services import backup_create
from billing.models import Plan
from instances.engine_client import PROXY_SECRET_HEADER
from instances.events import instance_event_record
from instances.models import Instance
from instances.services.reconcile import reconcile_pass
from quantmesh.crypto import decrypt
from tests.db import committing_db
from tests.instances.conftest import kill_engine
from tests.waiting import wait_for

from .conftest import TOKEN


def _row(owner, slug="alert1"):
    return Instance.objects.create(
        instance_id=f"qm-{slug}-1700000000",
        slug=slug,
        owner=owner,
        plan=Plan.objects.get(code="professional"),
        status="running",
        image="x",
        proxy_secret_encrypted="x",
    )


@committing_db
@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_crashed_instance_alerts_by_email_and_telegram(create_instance, runtime, customer, both_channels, telegram):
    both_channels(customer)
    instance_id = create_instance()["instance_id"]
    kill_engine(runtime, instance_id)
    reconcile_pass(backend=runtime)
    alert = Alert.objects.get(user=customer, kind=AlertKind.INSTANCE_DOWN)
    assert alert.status == "sent" and set(alert.delivered) == {"email", "telegram"}
    assert [m.subject for m in mail.outbox if instance_id in m.subject] == [f"{instance_id} crashed"]
    assert mail.outbox[-1].to == [customer.email]
    assert telegram.messages[-1]["chat_id"] == "424242"
    assert f"{instance_id} crashed" in telegram.messages[-1]["text"]
    # It crashes again at once: the same alert within the window is not sent twice.
    instance_event_record(instance=Instance.objects.get(instance_id=instance_id), kind="crashed", reason="again")
    assert Alert.objects.filter(user=customer, kind=AlertKind.INSTANCE_DOWN).count() == 1


@committing_db
@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_watch_alerts_on_risk_control_and_resources_near_the_limit(
    create_instance, runtime, customer, both_channels, telegram, settings
):
    both_channels(customer)
    instance_id = create_instance()["instance_id"]
    instance = Instance.objects.get(instance_id=instance_id)
    host, port = runtime.endpoint(instance_id)
    config = {
        "paper": {"tick_seconds": 0.01, "volatility": 0.003, "seed": 7},
        "grid": {"price_interval": 100, "order_quote_size": 100},
        "risk": {"max_position_quote": 1},
    }
    request = urllib.request.Request(  # noqa: S310 (loopback)
        f"http://{host}:{port}/api/config",
        data=json.dumps({"config": config}).encode(),
        method="PUT",
        headers={PROXY_SECRET_HEADER: decrypt(instance.proxy_secret_encrypted), "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).read()  # noqa: S310

    def paused():
        services.instances_watch()
        return Alert.objects.filter(user=customer, kind=AlertKind.RISK_TRIGGERED).exists()

    wait_for(paused, 20, "risk control pauses trading")
    risk = Alert.objects.get(user=customer, kind=AlertKind.RISK_TRIGGERED)
    assert "BTC/USDT" in risk.message and risk.status == "sent"
    # The instance's events feed says so too, once while the same symbols stay paused.
    services.instances_watch()
    triggered = instance.events.filter(kind="risk_triggered")
    assert triggered.count() == 1 and "BTC/USDT" in triggered.get().detail["symbols"]
    assert not Alert.objects.filter(kind=AlertKind.RESOURCE_HIGH).exists()  # an idle paper engine is far below
    settings.QM_ALERT_RESOURCE_THRESHOLD = 0.0  # every engine is "near" a zero threshold
    services.instances_watch()
    resource = Alert.objects.get(user=customer, kind=AlertKind.RESOURCE_HIGH)
    assert "memory" in resource.message and resource.status == "sent"
    assert any("near its resource limit" in m["text"] for m in telegram.messages)


@committing_db
def test_unhealthy_and_crash_loop_events_alert(customer, both_channels):
    both_channels(customer)
    instance = _row(customer)
    instance_event_record(instance=instance, kind="unhealthy", reason="engine heartbeat is stale")
    instance_event_record(instance=instance, kind="crash_loop", reason="exited with code 1")
    instance_event_record(instance=instance, kind="stopped")  # not an alert
    kinds = sorted(Alert.objects.filter(user=customer).values_list("kind", flat=True))
    assert kinds == ["instance_down", "instance_unhealthy"]
    assert "crash-looping" in Alert.objects.get(kind="instance_down").subject


@committing_db
def test_backup_failed_alerts(customer, both_channels, settings, tmp_path):
    both_channels(customer)
    settings.QM_PROCESS_ROOT = tmp_path
    from instances.runtime import get_backend

    get_backend.cache_clear()
    backup = backup_create(instance=_row(customer, "bkfail"), kind="daily")
    get_backend.cache_clear()
    assert backup.status == "failed"
    alert = Alert.objects.get(user=customer, kind=AlertKind.BACKUP_FAILED)
    assert backup.error in alert.message and alert.status == "sent"


def test_payment_failed_alerts(
    stripe_billing, user, client_for, both_channels, telegram, django_capture_on_commit_callbacks
):
    from djstripe.models import Customer

    both_channels(user)
    client = client_for(user)
    assert client.post("/api/billing/subscriptions/create", {"plan": "personal"}, format="json").status_code == 202
    customer = Customer.objects.get(subscriber=user)
    sub = stripe_billing.server.subscription(customer=customer.id, price=stripe_billing.price("personal"))
    with django_capture_on_commit_callbacks(execute=True):
        assert stripe_billing.send(client, "customer.subscription.created", sub) == 200
    sub["status"] = "past_due"
    invoice = stripe_billing.server.invoice(subscription=sub, status="open")
    with django_capture_on_commit_callbacks(execute=True):
        assert stripe_billing.send(client, "invoice.payment_failed", invoice) == 200
    alert = Alert.objects.get(user=user, kind=AlertKind.PAYMENT_FAILED)
    assert alert.status == "sent"
    assert mail.outbox[-1].subject == "Your QuantMesh Cloud payment failed"
    assert "payment failed" in telegram.messages[-1]["text"]


@pytest.mark.django_db
def test_failing_channel_is_retried_and_the_other_not_sent_twice(
    user, both_channels, telegram, django_capture_on_commit_callbacks
):
    both_channels(user)
    telegram.fail_next = 2
    with django_capture_on_commit_callbacks(execute=True):
        alert = services.alert_raise(user=user, kind=AlertKind.BACKUP_FAILED, subject="s", message="m")
    alert.refresh_from_db()
    assert (alert.status, alert.attempts) == ("sent", 3)
    assert len(mail.outbox) == 1 and len(telegram.messages) == 1


@pytest.mark.django_db
def test_a_channel_that_keeps_failing_ends_failed_without_leaking_the_token(
    user, both_channels, telegram, django_capture_on_commit_callbacks
):
    both_channels(user)
    telegram.fail_next = 100
    with django_capture_on_commit_callbacks(execute=True):
        alert = services.alert_raise(user=user, kind=AlertKind.BACKUP_FAILED, subject="s", message="m")
    alert.refresh_from_db()
    assert alert.status == "failed" and alert.attempts == 6
    assert "502" in alert.last_error and TOKEN not in alert.last_error
    assert set(alert.delivered) == {"email"}


@pytest.mark.django_db
def test_settings_decide_what_is_sent_and_where(user, client_for, telegram, django_capture_on_commit_callbacks):
    client = client_for(user)
    assert client.get("/api/saas/alerts/settings").json() == {
        "email_enabled": True,
        "telegram_enabled": False,
        "telegram_chat_id": "",
        "events": list(AlertKind.values),
    }
    bad = client.put(
        "/api/saas/alerts/settings",
        {"email_enabled": True, "telegram_enabled": True, "events": ["nope"]},
        format="json",
    )
    assert bad.status_code == 400 and "nope" in bad.json()["error"]["message"]
    no_chat = client.put(
        "/api/saas/alerts/settings", {"email_enabled": True, "telegram_enabled": True, "events": []}, format="json"
    )
    assert no_chat.status_code == 400 and "telegram_chat_id" in no_chat.json()["error"]["message"]
    ok = client.put(
        "/api/saas/alerts/settings",
        {"email_enabled": False, "telegram_enabled": True, "telegram_chat_id": "77", "events": ["payment_failed"]},
        format="json",
    )
    assert ok.status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert services.alert_raise(user=user, kind=AlertKind.BACKUP_FAILED, subject="s", message="m") is None
        assert services.alert_raise(user=user, kind=AlertKind.PAYMENT_FAILED, subject="paid?", message="m")
    assert mail.outbox == [] and telegram.messages[-1]["chat_id"] == "77"
    assert client.get("/api/saas/alerts").json()[0]["subject"] == "paid?"


@pytest.mark.django_db
def test_console_notification_settings_keep_input_on_error(user, client, telegram):
    client.force_login(user)
    page = client.get("/settings/notifications")
    assert page.status_code == 200 and b"Risk control triggered" in page.content
    response = client.post(
        "/settings/notifications", {"telegram_enabled": "on", "telegram_chat_id": "", "events": ["risk_triggered"]}
    )
    assert response.status_code == 200 and b"telegram_chat_id" in response.content
    assert b'value="risk_triggered" checked' in response.content
    response = client.post(
        "/settings/notifications",
        {"telegram_enabled": "on", "telegram_chat_id": "99", "events": ["risk_triggered"]},
        follow=True,
    )
    assert b"Notification settings saved." in response.content
    assert services.alert_settings_get(user=user).events == ["risk_triggered"]


@committing_db
def test_not_trading_alert_names_the_cause_and_links_to_the_fix(customer, both_channels, settings):
    """The alert e-mail for an engine that runs but does not trade blamed a "stale heartbeat", with no
    cause and no link: it now carries the engine's cause and reason and where to fix it."""
    from instances.trading import engine_status_record

    both_channels(customer)
    instance = _row(customer, slug="alert2")
    reason = "exchange error, retrying in 4 s: ExchangeNotAvailable: binance GET https://api.binance.com"
    payload = {
        "state": "error",
        "trading_state": "error",
        "trading_cause": "exchange_unreachable",
        "trading_reason": reason,
        "symbols": [],
    }
    engine_status_record(instance=instance, payload=payload)
    alert = Alert.objects.get(user=customer, instance=instance)
    assert alert.kind == "instance_unhealthy"
    assert alert.subject == f"{instance.instance_id} is not trading: exchange unreachable"
    assert reason in alert.message and "stale" not in alert.message
    assert f"{settings.QM_PUBLIC_URL}/instances/{instance.instance_id}/open?to=config" in alert.message
    assert instance.events.filter(kind="trading_error").exists()  # the change is on record
    engine_status_record(instance=instance, payload=payload)  # the same state again: no new event
    assert instance.events.filter(kind="trading_error").count() == 1


@committing_db
def test_risk_pause_alert_names_the_rule(customer, both_channels):
    from instances.trading import engine_status_record

    both_channels(customer)
    instance = _row(customer, slug="alert3")
    engine_status_record(instance=instance, payload={"trading_state": "trading", "symbols": []})
    engine_status_record(
        instance=instance,
        payload={
            "trading_state": "paused",
            "trading_cause": "stop_loss",
            "trading_reason": "risk control (stop_loss) paused buying of BTC/USDT",
            "symbols": [],
        },
    )
    alert = Alert.objects.get(user=customer, kind="risk_triggered")
    assert "stop-loss" in alert.subject and "paused buying of BTC/USDT" in alert.message


@pytest.mark.django_db
@pytest.mark.parametrize("chat_id", ["not-a-number", "12 34", "@ab", "1" * 21])
def test_telegram_chat_id_must_be_a_chat_id(user, client, telegram, chat_id):
    client.force_login(user)
    response = client.post(
        "/settings/notifications", {"telegram_enabled": "on", "telegram_chat_id": chat_id, "events": ["risk_triggered"]}
    )
    assert response.status_code == 200 and b"a number such as 123456789" in response.content
    assert services.alert_settings_get(user=user).telegram_chat_id == ""
    for good in ("-1001234567890", "@quantmesh_alerts"):
        services.alert_settings_update(
            user=user, email_enabled=True, telegram_enabled=True, telegram_chat_id=good, events=["risk_triggered"]
        )


@committing_db
def test_alerts_are_written_in_the_language_the_user_reads(customer, both_channels, telegram, settings):
    """Alerts go out from workers, where no request names a language: a customer who reads the console
    in Chinese gets the e-mail and the Telegram message in Chinese, the engine's reason included (its
    own details, such as the exchange's error, stay as the engine wrote them)."""
    from accounts.services import user_language_set
    from instances.trading import engine_status_record

    user_language_set(user=customer, language="zh-hans")
    both_channels(customer)
    instance = _row(customer, slug="alrtzh")
    engine_status_record(instance=instance, payload={"trading_state": "trading", "symbols": []})
    payload = {
        "trading_state": "error",
        "trading_cause": "exchange_unreachable",
        "trading_reason": "exchange error, retrying in 4 s: ExchangeNotAvailable: binance GET /api/v3/time",
        "symbols": [],
    }
    engine_status_record(instance=instance, payload=payload)
    email = [m for m in mail.outbox if instance.instance_id in m.subject][-1]
    assert email.subject == f"{instance.instance_id} 未在交易：无法连接交易所"
    assert email.body.startswith("引擎在运行，但未在交易：交易所出错，4 秒后重试：ExchangeNotAvailable: binance")
    assert f"修复：{settings.QM_PUBLIC_URL}/instances/{instance.instance_id}/open?to=config" in email.body
    assert telegram.messages[-1]["text"] == f"{email.subject}\n\n{email.body}"


@committing_db
def test_a_failed_backup_is_explained_in_the_owners_language(customer, both_channels, settings, tmp_path):
    """A daily backup runs in a worker: its reason and its alert follow the owner's language."""
    from accounts.services import user_language_set
    from instances.runtime import get_backend

    user_language_set(user=customer, language="zh-hans")
    both_channels(customer)
    settings.QM_PROCESS_ROOT = tmp_path
    get_backend.cache_clear()
    backup = backup_create(instance=_row(customer, "bkzh"), kind="daily")
    get_backend.cache_clear()
    assert backup.status == "failed" and backup.error == "该实例还没有引擎数据库"
    alert = Alert.objects.get(user=customer, kind=AlertKind.BACKUP_FAILED)
    assert alert.subject == "qm-bkzh-1700000000 的备份失败"
    assert alert.message == "每日备份失败：该实例还没有引擎数据库"
