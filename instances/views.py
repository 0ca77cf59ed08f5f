"""Console views of instances that are not pages: the hand-over into an instance's own URL."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseRedirect

from . import access, selectors


@login_required
def instance_open(request, instance_id: str):
    """Send the owner's browser to the instance URL with a one-time ticket (sessions are per host)."""
    instance = selectors.instance_get(owner=request.user, instance_id=instance_id)
    if instance is None:
        raise Http404
    ticket = access.ticket_issue(instance=instance, user=request.user)
    return HttpResponseRedirect(f"{instance.url}/__quantmesh/login?ticket={ticket}")


def instance_ticket_login(request):
    """On the instance host: trade the ticket for a cookie valid on this host only, then show the engine."""
    slug = access.slug_from_host(request.get_host())
    value = slug and access.ticket_redeem(ticket=request.GET.get("ticket", ""), slug=slug)
    if not value:
        raise Http404
    response = HttpResponseRedirect("/")
    response.set_cookie(
        access.INSTANCE_COOKIE,
        value,
        max_age=settings.SESSION_COOKIE_AGE,
        httponly=True,
        secure=request.is_secure(),
        samesite="Lax",
    )
    return response
