"""The portal's Prometheus metrics and the scrape endpoints for Prometheus.

- `/metrics`: the portal itself. Request counts and latency are counted in this process;
  instance counts, provisioning times, reconcile results and the Celery queue are read from the
  database, the cache and the broker at scrape time, so every portal process answers the same.
- `/internal/prometheus/targets`: HTTP service discovery, one target per live instance, with
  `instance` and `owner` (the owner's user id: no personal data, stable when the e-mail changes)
  labels; each target is the portal's `/internal/engine-metrics/<id>`,
  which fetches that engine's /metrics with its secret (Prometheus never holds engine secrets).
All three want `Authorization: Bearer <QM_METRICS_TOKEN>`, and refuse everyone while it is unset
(fail closed).
"""

from __future__ import annotations

import hmac
import time
from datetime import timedelta

import redis
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count
from django.http import Http404, HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from instances.models import Instance, InstanceEvent
from instances.selectors import instance_engine_get, instance_runtime_stats

Kind = InstanceEvent.Kind

REGISTRY = CollectorRegistry()
REQUESTS = Counter("quantmesh_http_requests_total", "HTTP requests handled.", ["method", "status"], registry=REGISTRY)
LATENCY = Histogram(
    "quantmesh_http_request_duration_seconds",
    "HTTP request latency.",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
RECONCILE_CACHE_KEY = "metrics:last-reconcile"


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        LATENCY.labels(request.method).observe(time.perf_counter() - started)
        REQUESTS.labels(request.method, str(response.status_code)).inc()
        return response


class PlatformCollector:
    """State read at scrape time (shared by every portal and worker process)."""

    def describe(self):
        return []  # nothing to check at registration: collect() reads the database only when scraped

    def collect(self):
        instances = GaugeMetricFamily("quantmesh_instances", "Instances by state.", labels=["state"])
        counts = dict(Instance.objects.values_list("status").annotate(n=Count("id")))
        for state in Instance.Status.values:
            instances.add_metric([state], counts.get(state, 0))
        yield instances

        # Time from `created` to the first `running` for instances created in the last hour.
        recent = InstanceEvent.objects.filter(
            kind__in=[Kind.CREATED, Kind.RUNNING], created_at__gte=time_ago(3600)
        ).order_by("created_at")
        created, durations = {}, []
        for instance_id, kind, at in recent.values_list("instance_id", "kind", "created_at"):
            if kind == Kind.CREATED:
                created[instance_id] = at
            elif instance_id in created:
                durations.append((at - created.pop(instance_id)).total_seconds())
        provisioning = GaugeMetricFamily(
            "quantmesh_provisioning_seconds", "Create-to-running time over the last hour.", labels=["quantile"]
        )
        for quantile in (0.5, 0.95):
            value = sorted(durations)[int(quantile * (len(durations) - 1))] if durations else 0
            provisioning.add_metric([str(quantile)], value)
        yield provisioning
        failures = InstanceEvent.objects.filter(
            kind=Kind.FAILED, from_status=Instance.Status.PROVISIONING, created_at__gte=time_ago(3600)
        ).count()
        yield GaugeMetricFamily(
            "quantmesh_provisioning_failures_last_hour", "Instances that failed to provision.", value=failures
        )

        last = cache.get(RECONCILE_CACHE_KEY) or {}
        for name, help_text in (
            ("seconds", "Duration of the last reconcile pass."),
            ("checked", "Instances checked by the last reconcile pass."),
            ("crashed", "Crashes found by the last reconcile pass."),
            ("orphans_removed", "Orphans removed by the last reconcile pass."),
            ("converges", "Repairs started by the last reconcile pass."),
        ):
            yield GaugeMetricFamily(f"quantmesh_reconcile_last_{name}", help_text, value=last.get(name, 0))
        yield GaugeMetricFamily(
            "quantmesh_reconcile_last_timestamp_seconds", "When the last pass ran.", value=last.get("at", 0)
        )
        yield GaugeMetricFamily(
            "quantmesh_celery_queue_depth", "Tasks waiting in the Celery queue.", value=celery_queue_depth()
        )


def time_ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def celery_queue_depth() -> int:
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        return 0  # tasks run in process: nothing ever waits
    return redis.Redis.from_url(settings.CELERY_BROKER_URL).llen("celery")


def record_reconcile(report) -> None:
    cache.set(RECONCILE_CACHE_KEY, {**report.as_dict(), "at": time.time()}, timeout=None)


REGISTRY.register(PlatformCollector())


def bearer_matches(request, token: str) -> bool:
    """The request carries `Authorization: Bearer <token>`; never true while `token` is unset."""
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def _authorized(request) -> bool:
    return bearer_matches(request, settings.QM_METRICS_TOKEN)


def metrics_view(request):
    if not _authorized(request):
        raise Http404
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


def targets_view(request):
    """Prometheus HTTP service discovery: one target per live instance, labelled."""
    if not _authorized(request):
        raise Http404
    target = settings.QM_METRICS_PORTAL_TARGET or request.get_host()
    live = Instance.objects.exclude(status__in=[Instance.Status.DELETED, Instance.Status.DELETING]).values_list(
        "instance_id", "owner_id"
    )
    return JsonResponse(
        [
            {
                "targets": [target],
                "labels": {
                    "__metrics_path__": f"/internal/engine-metrics/{instance_id}",
                    "instance": instance_id,
                    "owner": str(owner),
                },
            }
            for instance_id, owner in live
        ],
        safe=False,
    )


def engine_metrics_view(request, instance_id: str):
    """One engine's /metrics, fetched with its secret (for the targets above)."""
    if not _authorized(request):
        raise Http404
    instance = Instance.objects.filter(instance_id=instance_id).exclude(status=Instance.Status.DELETED).first()
    if instance is None:
        raise Http404
    reply = instance_engine_get(instance=instance, path="/metrics", timeout=5)
    if reply is None or reply.status != 200:
        return HttpResponse("engine not answering\n", status=503, content_type="text/plain")
    return HttpResponse(reply.body + _runtime_metrics(instance_id), content_type="text/plain; version=0.0.4")


def _runtime_metrics(instance_id: str) -> bytes:
    """What the runtime knows and the engine cannot: CPU and memory against the plan's limits."""
    stats = instance_runtime_stats(instance_id=instance_id)
    if stats is None:
        return b""
    lines = []
    for name, help_text, value in (
        ("cpu_ratio", "CPU used, as a fraction of the plan's CPU limit.", stats.cpu_usage),
        ("cpu_limit_cores", "The plan's CPU limit.", stats.cpu_limit),
        ("memory_bytes", "Memory used.", stats.memory_bytes),
        ("memory_limit_bytes", "The plan's memory limit.", stats.memory_limit_mb * 1024 * 1024),
    ):
        lines += [f"# HELP quantmesh_instance_{name} {help_text}", f"# TYPE quantmesh_instance_{name} gauge"]
        lines.append(f"quantmesh_instance_{name} {value}")
    return ("\n".join(lines) + "\n").encode()
