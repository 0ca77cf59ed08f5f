"""Traefik's HTTP provider (production routing): one router per live instance.

Traefik polls this endpoint. Each instance host goes to its engine container on the internal
network, through the portal's forward-auth (owner only) and a middleware that adds the engine's
secret and removes the customer's `Authorization` and `Cookie`; `/__quantmesh/` on an instance host
goes to the portal itself (the console hand-over).
Traefik presents QM_TRAEFIK_PROVIDER_TOKEN; without the setting the endpoint does not exist.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db.models import Prefetch
from django.http import Http404, JsonResponse

from quantmesh.crypto import decrypt

from .engine_client import PROXY_SECRET_HEADER
from .models import CustomDomain, Instance
from .proxy import ENGINE_STRIPPED_CREDENTIALS
from .runtime.docker import DockerBackend


def engine_request_headers(instance: Instance) -> dict[str, str]:
    """After forward-auth: add the engine's secret and drop the customer's portal credentials (an
    empty value makes Traefik remove the header), as the built-in router does."""
    return {
        **{header: "" for header in ENGINE_STRIPPED_CREDENTIALS},
        PROXY_SECRET_HEADER: decrypt(instance.proxy_secret_encrypted),
    }


def dynamic_config() -> dict:
    routers, services, middlewares = (
        {},
        {},
        {
            "quantmesh-owner-only": {
                "forwardAuth": {
                    "address": f"{settings.QM_TRAEFIK_PORTAL_URL}/internal/forward-auth",
                    "trustForwardHeader": True,
                }
            },
        },
    )
    live = (
        Instance.objects.exclude(status__in=[Instance.Status.DELETED, Instance.Status.DELETING])
        .only("instance_id", "slug", "proxy_secret_encrypted")
        .prefetch_related(
            Prefetch("domains", CustomDomain.objects.filter(verified_at__isnull=False, suspended_at__isnull=True))
        )
    )
    tls = {"certResolver": settings.QM_TRAEFIK_CERT_RESOLVER}
    for instance in live:
        name = f"instance-{instance.slug}"
        # The instance host and the customer's verified domains (Let's Encrypt certifies each).
        hosts = [f"{name}.{settings.QM_BASE_DOMAIN}", *(d.domain for d in instance.domains.all())]
        host = " || ".join(f"Host(`{h}`)" for h in hosts)
        routers[name] = {
            "rule": host,
            "service": name,
            "entryPoints": ["websecure"],
            "tls": tls,
            "middlewares": ["quantmesh-owner-only", f"{name}-secret"],
        }
        routers[f"{name}-portal"] = {
            "rule": f"({host}) && PathPrefix(`/__quantmesh/`)",
            "priority": 1000,
            "service": "portal@docker",
            "entryPoints": ["websecure"],
            "tls": tls,
        }
        services[name] = {
            "loadBalancer": {"servers": [{"url": f"http://{DockerBackend.container_name(instance.instance_id)}:8080"}]}
        }
        middlewares[f"{name}-secret"] = {"headers": {"customRequestHeaders": engine_request_headers(instance)}}
    return {"http": {"routers": routers, "services": services, "middlewares": middlewares}}


def provider(request):
    expected = settings.QM_TRAEFIK_PROVIDER_TOKEN
    given = request.headers.get("X-QuantMesh-Provider-Token", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Http404
    return JsonResponse(dynamic_config())
