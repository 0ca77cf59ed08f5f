"""Custom domains: add one (it must CNAME to the instance host), verify it by DNS, remove it.

DNS is never asked on a request's path or in the reconcile loop: adding a domain or asking for a
new check enqueues `instances.tasks.domain_check` (one domain, a lookup of at most
QM_DNS_TIMEOUT_SECONDS). Every QM_DOMAIN_RECHECK period each domain is checked again: a verified
domain whose CNAME is gone is withdrawn (no longer routed), and a name still unverified
QM_DOMAIN_PENDING_HOURS (72) after it was added is released, so nobody can squat it. An instance
holds at most QM_DOMAINS_PER_INSTANCE domains.
"""

from __future__ import annotations

import re
from datetime import timedelta

import dns.exception
import dns.resolver
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.selectors import user_language
from billing.selectors import entitlements_for
from quantmesh.errors import ServiceError
from quantmesh.tasks import enqueue_on_commit

from .. import tasks
from ..events import instance_event_record
from ..models import CustomDomain, Instance, InstanceEvent

K = InstanceEvent.Kind

# RFC 1123 host names: labels of letters, digits and hyphens, at least one dot, no trailing dot.
DOMAIN_PATTERN = re.compile(r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")


def cname_target(instance: Instance) -> str:
    return f"instance-{instance.slug}.{settings.QM_BASE_DOMAIN}"


def domain_add(*, instance: Instance, domain: str, actor) -> CustomDomain:
    domain = domain.strip().lower().rstrip(".")
    if not entitlements_for(instance.owner).has_feature("custom_domain"):
        raise ServiceError(
            code="plan_not_allowed",
            message=_("Custom domains come with the Professional and Enterprise plans: upgrade first."),
            status=403,
        )
    if not DOMAIN_PATTERN.match(domain):
        raise ServiceError(
            code="invalid_request",
            message=_('domain: "%(domain)s" is not a host name like trading.example.com.') % {"domain": domain},
            details={"domain": [_("Enter a host name such as trading.example.com.")]},
        )
    if domain == settings.QM_BASE_DOMAIN or domain.endswith("." + settings.QM_BASE_DOMAIN):
        raise ServiceError(
            code="invalid_request",
            message=_("domain: %(domain)s belongs to QuantMesh Cloud; use a domain of your own.") % {"domain": domain},
            details={"domain": [_("This domain is ours.")]},
        )
    try:
        with transaction.atomic():
            Instance.objects.select_for_update().filter(pk=instance.pk).first()  # one add at a time per instance
            held = CustomDomain.objects.filter(instance=instance).count()
            if held >= settings.QM_DOMAINS_PER_INSTANCE:
                raise ServiceError(
                    code="domain_limit",
                    message=_("An instance can have %(limit)d custom domains; remove one first.")
                    % {"limit": settings.QM_DOMAINS_PER_INSTANCE},
                    status=409,
                    details={"limit": settings.QM_DOMAINS_PER_INSTANCE},
                )
            custom = CustomDomain.objects.create(instance=instance, domain=domain)
            instance_event_record(instance=instance, kind=K.DOMAIN_ADDED, actor=actor, domain=domain)
            domain_check_enqueue(domain_id=custom.pk)
    except IntegrityError:
        raise ServiceError(
            code="domain_taken",
            message=_("%(domain)s is already attached to an instance.") % {"domain": domain},
            status=409,
        ) from None
    return custom


def _resolver() -> dns.resolver.Resolver:
    if not settings.QM_DNS_NAMESERVERS:
        return dns.resolver.Resolver()
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = settings.QM_DNS_NAMESERVERS
    resolver.port = settings.QM_DNS_PORT
    return resolver


DNS_UNANSWERED = gettext_lazy("DNS did not answer; try again in a few minutes")


def _cname_problem(domain: str, target: str) -> str:
    """Why `domain` does not point at `target` (empty: it does), within QM_DNS_TIMEOUT_SECONDS."""
    resolver = _resolver()
    resolver.lifetime = resolver.timeout = settings.QM_DNS_TIMEOUT_SECONDS
    try:
        answer = resolver.resolve(domain, "CNAME")
    except dns.resolver.NXDOMAIN:
        return _("%(domain)s does not exist in DNS yet") % {"domain": domain}
    except dns.resolver.NoAnswer:
        return _("%(domain)s has no CNAME record") % {"domain": domain}
    except (dns.exception.Timeout, dns.resolver.NoNameservers):
        return str(DNS_UNANSWERED)
    found = [str(record.target).rstrip(".").lower() for record in answer]
    if target in found:
        return ""
    return _("%(domain)s points to %(found)s, not %(target)s") % {
        "domain": domain,
        "found": _(", ").join(found),
        "target": target,
    }


def domain_check_enqueue(*, domain_id: int) -> None:
    """A DNS check of the domain by a worker, once the current transaction commits."""
    enqueue_on_commit(tasks.domain_check, domain_id)


def domain_verify(*, custom: CustomDomain, actor=None) -> CustomDomain:
    """Look the CNAME up now (a task's work, never a request's): a pending domain whose CNAME is in
    place is verified (Traefik routes it, with TLS, from its next poll); a verified one whose CNAME
    is gone is withdrawn. A DNS server that does not answer changes nothing but the message, which
    is written in the owner's language (no request here to take one from)."""
    with translation.override(user_language(custom.instance.owner)):
        problem = _cname_problem(custom.domain, cname_target(custom.instance))
        unanswered = problem == str(DNS_UNANSWERED)
    custom.last_checked_at = timezone.now()
    custom.last_error = problem[:255]
    newly = not problem and custom.verified_at is None
    withdrawn = problem and not unanswered and custom.verified_at is not None
    if newly:
        custom.verified_at = custom.last_checked_at
    if withdrawn:
        custom.verified_at = None
    custom.save(update_fields=["last_checked_at", "last_error", "verified_at"])
    if newly or withdrawn:
        kind = K.DOMAIN_VERIFIED if newly else K.DOMAIN_WITHDRAWN
        instance_event_record(instance=custom.instance, kind=kind, actor=actor, domain=custom.domain, reason=problem)
    return custom


def domain_remove(*, custom: CustomDomain, actor, kind: str = K.DOMAIN_REMOVED, **detail) -> None:
    """Detach the domain (by its owner, or released by the platform: `kind` says which)."""
    with transaction.atomic():
        instance_event_record(instance=custom.instance, kind=kind, actor=actor, domain=custom.domain, **detail)
        custom.delete()


def domain_check(*, domain_id: int) -> CustomDomain | None:
    custom = CustomDomain.objects.select_related("instance__owner").filter(pk=domain_id).first()
    return domain_verify(custom=custom) if custom else None


def domains_recheck() -> int:
    """Periodic: release names left unverified too long, and enqueue a check of every other domain
    (pending ones may have become verified; verified ones may have lost their CNAME). Returns the
    number of checks enqueued."""
    expiry = timezone.now() - timedelta(hours=settings.QM_DOMAIN_PENDING_HOURS)
    stale = CustomDomain.objects.filter(verified_at__isnull=True, created_at__lt=expiry).select_related("instance")
    for custom in stale:
        domain_remove(custom=custom, actor=None, kind=K.DOMAIN_EXPIRED, reason=custom.last_error)
    ids = list(CustomDomain.objects.values_list("pk", flat=True))
    for domain_id in ids:
        domain_check_enqueue(domain_id=domain_id)
    return len(ids)


def domains_follow_plan(*, instances: list[Instance], routed: bool, reason: str) -> None:
    """Route the instances' custom domains again (`routed`), or stop routing them (kept, suspended),
    as the owner's plan includes custom domains or no longer does."""
    changing = CustomDomain.objects.filter(instance__in=instances, suspended_at__isnull=not routed).select_related(
        "instance"
    )
    for custom in changing:
        custom.suspended_at = None if routed else timezone.now()
        custom.save(update_fields=["suspended_at"])
        instance_event_record(
            instance=custom.instance,
            kind=K.DOMAIN_ROUTED if routed else K.DOMAIN_UNROUTED,
            domain=custom.domain,
            reason=f"{custom.domain}: custom domains are "
            + (
                "included in your plan again"
                if routed
                else f"not included in your plan ({reason}); it is no longer routed"
            ),
        )


def instance_for_domain(host: str) -> Instance | None:
    host = (host or "").split(":")[0].lower()
    custom = (
        CustomDomain.objects.filter(domain=host, verified_at__isnull=False, suspended_at__isnull=True)
        .select_related("instance")
        .first()
    )
    return custom.instance if custom else None
