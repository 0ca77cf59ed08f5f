"""Custom domains: add one (it must CNAME to the instance host), verify it by DNS, remove it."""

from __future__ import annotations

import re

import dns.exception
import dns.resolver
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.selectors import entitlements_for
from quantmesh.api.errors import ApiError

from .events import instance_event_record
from .models import CustomDomain, Instance

# RFC 1123 host names: labels of letters, digits and hyphens, at least one dot, no trailing dot.
DOMAIN_PATTERN = re.compile(r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")


def cname_target(instance: Instance) -> str:
    return f"instance-{instance.slug}.{settings.QM_BASE_DOMAIN}"


def domain_add(*, instance: Instance, domain: str, actor) -> CustomDomain:
    domain = domain.strip().lower().rstrip(".")
    if not entitlements_for(instance.owner).has_feature("custom_domain"):
        raise ApiError(
            code="plan_not_allowed",
            message="Custom domains come with the Professional and Enterprise plans: upgrade first.",
            status_code=403,
        )
    if not DOMAIN_PATTERN.match(domain):
        raise ApiError(
            code="invalid_request",
            message=f'domain: "{domain}" is not a host name like trading.example.com.',
            details={"domain": ["Enter a host name such as trading.example.com."]},
        )
    if domain == settings.QM_BASE_DOMAIN or domain.endswith("." + settings.QM_BASE_DOMAIN):
        raise ApiError(
            code="invalid_request",
            message=f"domain: {domain} belongs to QuantMesh Cloud; use a domain of your own.",
            details={"domain": ["This domain is ours."]},
        )
    try:
        with transaction.atomic():
            custom = CustomDomain.objects.create(instance=instance, domain=domain)
            instance_event_record(instance=instance, kind="domain_added", actor=actor, domain=domain)
    except IntegrityError:
        raise ApiError(
            code="domain_taken", message=f"{domain} is already attached to an instance.", status_code=409
        ) from None
    return custom


def _resolver() -> dns.resolver.Resolver:
    if not settings.QM_DNS_NAMESERVERS:
        return dns.resolver.Resolver()
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = settings.QM_DNS_NAMESERVERS
    resolver.port = settings.QM_DNS_PORT
    return resolver


def _cname_problem(domain: str, target: str) -> str:
    """Why `domain` does not point at `target` (empty: it does)."""
    resolver = _resolver()
    resolver.lifetime = 5
    try:
        answer = resolver.resolve(domain, "CNAME")
    except dns.resolver.NXDOMAIN:
        return f"{domain} does not exist in DNS yet"
    except dns.resolver.NoAnswer:
        return f"{domain} has no CNAME record"
    except (dns.exception.Timeout, dns.resolver.NoNameservers):
        return "DNS did not answer; try again in a few minutes"
    found = [str(record.target).rstrip(".").lower() for record in answer]
    if target in found:
        return ""
    return f"{domain} points to {', '.join(found)}, not {target}"


def domain_verify(*, custom: CustomDomain, actor=None) -> CustomDomain:
    """Look the CNAME up now; verified domains are routed (with TLS) from Traefik's next poll."""
    problem = _cname_problem(custom.domain, cname_target(custom.instance))
    custom.last_checked_at = timezone.now()
    custom.last_error = problem[:255]
    newly = not problem and custom.verified_at is None
    if newly:
        custom.verified_at = custom.last_checked_at
    custom.save(update_fields=["last_checked_at", "last_error", "verified_at"])
    if newly:
        instance_event_record(instance=custom.instance, kind="domain_verified", actor=actor, domain=custom.domain)
    return custom


def domain_remove(*, custom: CustomDomain, actor) -> None:
    with transaction.atomic():
        instance_event_record(instance=custom.instance, kind="domain_removed", actor=actor, domain=custom.domain)
        custom.delete()


def domains_recheck() -> int:
    """Periodic: verify pending domains (DNS changes take a while to show). Returns how many became verified."""
    verified = 0
    for custom in CustomDomain.objects.filter(verified_at__isnull=True).select_related("instance"):
        verified += domain_verify(custom=custom).verified_at is not None
    return verified


def instance_for_domain(host: str) -> Instance | None:
    host = (host or "").split(":")[0].lower()
    custom = (
        CustomDomain.objects.filter(domain=host, verified_at__isnull=False, suspended_at__isnull=True)
        .select_related("instance")
        .first()
    )
    return custom.instance if custom else None
