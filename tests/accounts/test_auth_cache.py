"""Bearer tokens kept between requests (accounts/auth_cache.py) never open an account they no longer
open: a revoke, a new password, a disabled account and a second-factor change are seen by the next
request of every process, a rolled-back change leaves nothing behind, and a token ends on time."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework import exceptions

from accounts import auth_cache
from accounts.authentication import token_authenticate
from accounts.models import ApiToken
from accounts.services import api_token_create, api_token_revoke, credentials_revoke_all, hash_token
from quantmesh import versions
from quantmesh.cache import redis_client
from tests.db import committing_db
from tests.live_server import live_portal

pytestmark = committing_db


def _redis():
    return redis_client(settings.REDIS_URL)


@pytest.fixture(autouse=True)
def _empty_cache():
    auth_cache.forget_local()
    yield
    auth_cache.forget_local()


def _in_a_request(raw: str):
    with versions.request_memo():
        return token_authenticate(raw)


def _status(base: str, raw: str) -> int:
    request = urllib.request.Request(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {raw}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_second_request_reads_no_token(user, django_assert_num_queries):
    raw = api_token_create(user=user)[1]
    _in_a_request(raw)  # read (twice: see auth_cache.token_get) and last use written
    with django_assert_num_queries(0):
        found, token = _in_a_request(raw)
    assert found.pk == user.pk and token.key_hash == hash_token(raw)


def test_each_request_gets_its_own_user(user):
    raw = api_token_create(user=user)[1]
    first, _ = _in_a_request(raw)
    first.full_name = "changed by one request"
    second, _ = _in_a_request(raw)
    assert second.full_name == user.full_name and second is not first


def test_another_process_sees_each_change_on_its_next_request(user):
    raw = api_token_create(user=user)[1]
    spare = api_token_create(user=user)[1]
    with live_portal() as (base, _):
        assert [_status(base, raw) for _ in range(3)] == [200] * 3
        assert _redis().get(auth_cache.AUTH_KEY.format(user_id=user.pk))  # the portal keeps the token

        api_token_revoke(token=ApiToken.objects.get(key_hash=hash_token(raw)))
        assert _status(base, raw) == 401

        assert _status(base, spare) == 200
        credentials_revoke_all(user=user, reason="password_changed")  # one UPDATE, no post_save
        assert _status(base, spare) == 401

        raw = api_token_create(user=user)[1]
        assert _status(base, raw) == 200
        user.is_active = False
        user.save(update_fields=["is_active"])
        assert _status(base, raw) == 401
        user.is_active = True
        user.save(update_fields=["is_active"])
        assert _status(base, raw) == 200


def test_a_second_factor_is_seen_by_the_next_request(user):
    raw = api_token_create(user=user)[1]
    with live_portal() as (base, _):
        me = urllib.request.Request(f"{base}/api/auth/me", headers={"Authorization": f"Bearer {raw}"})

        def two_factor_shown() -> bool:
            with urllib.request.urlopen(me, timeout=10) as response:  # noqa: S310 (loopback)
                return b'"two_factor_enabled":true' in response.read()

        assert [two_factor_shown() for _ in range(2)] == [False, False]
        device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
        assert two_factor_shown()
        device.delete()
        assert not two_factor_shown()


def test_a_rolled_back_revoke_is_not_kept(user):
    raw = api_token_create(user=user)[1]
    _in_a_request(raw)
    with pytest.raises(RuntimeError), transaction.atomic():
        api_token_revoke(token=ApiToken.objects.get(key_hash=hash_token(raw)))
        with pytest.raises(exceptions.AuthenticationFailed):
            _in_a_request(raw)  # this transaction sees its own revoke
        raise RuntimeError("the request failed")
    assert _in_a_request(raw)[0].pk == user.pk


def test_a_token_ends_on_time_although_nothing_was_written(user):
    raw = api_token_create(user=user, ttl=timedelta(seconds=1.5))[1]
    assert _in_a_request(raw)[0].pk == user.pk
    time.sleep(1.6)
    with pytest.raises(exceptions.AuthenticationFailed, match="expired"):
        _in_a_request(raw)


def test_a_redis_that_lost_its_keys_matches_no_entry(user):
    """Redis keeps nothing on disk: after a restart every version is new, so a revoke whose version
    change was lost with it (standing in for it: SQL that bypasses the ORM) is seen at once."""
    raw = api_token_create(user=user)[1]
    _in_a_request(raw)
    _redis().delete(*versions.user_keys(user.pk))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_apitoken SET revoked_at = now() WHERE key_hash = %s", [hash_token(raw)])
    with pytest.raises(exceptions.AuthenticationFailed, match="revoked"):
        _in_a_request(raw)


def test_a_kept_token_writes_its_last_use_once_a_minute(user, django_assert_num_queries):
    raw = api_token_create(user=user)[1]
    _in_a_request(raw)
    first = ApiToken.objects.get(key_hash=hash_token(raw)).last_used_at
    assert first is not None
    with django_assert_num_queries(0):  # no UPDATE though the kept token was read before its first use
        _in_a_request(raw)
    assert ApiToken.objects.get(key_hash=hash_token(raw)).last_used_at == first


@pytest.mark.parametrize("redis", ["kept", "no Redis"])
def test_a_burst_on_a_token_writes_its_last_use_once(user, settings, redis):
    """The defect: every request that found the recorded use stale wrote it, so the first burst on a
    token (and one each minute under load) was a burst of UPDATEs; on SQLite some waited out the
    busy timeout and answered 503 (4 of ~2,400 instance listings in one benchmark run)."""
    if redis == "no Redis":
        settings.REDIS_URL = ""
    raw = api_token_create(user=user)[1]
    writes = []
    update = QuerySet.update

    def counting_update(queryset, **fields):
        if queryset.model is ApiToken and "last_used_at" in fields:
            writes.append(fields["last_used_at"])
        return update(queryset, **fields)

    start = threading.Barrier(12)

    def request():
        start.wait()
        try:
            _in_a_request(raw)
        finally:
            connection.close()

    with mock.patch.object(QuerySet, "update", counting_update):
        threads = [threading.Thread(target=request) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(writes) == 1
    assert ApiToken.objects.get(key_hash=hash_token(raw)).last_used_at == writes[0]


def test_without_redis_every_request_reads_the_database(user, settings, django_assert_num_queries):
    raw = api_token_create(user=user)[1]
    _in_a_request(raw)
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    for _ in range(2):
        with django_assert_num_queries(1):
            assert _in_a_request(raw)[0].pk == user.pk
