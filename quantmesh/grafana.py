"""Grafana for customers: who they are, and what their queries may read.

- `/internal/grafana-auth` (Traefik forward-auth in front of `/grafana`): a signed-in portal user
  passes, with `X-WEBAUTH-USER: user-<id>` for Grafana's auth proxy (the login: a stable id, not
  the e-mail, which can change) and the e-mail for display (staff get the Admin role).
- `/internal/prometheus-tenant/api/v1/...`: Grafana's only data source. Grafana presents
  QM_GRAFANA_DATASOURCE_TOKEN and the signed-in user's login (`X-Grafana-User: user-<id>`); every
  selector of every query is rewritten to carry `owner="<that user's id>"` (a matcher the query had
  on `owner` is replaced), so editing a query cannot reach another customer's series. Staff read
  everything.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import promql_parser
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from .metrics import bearer_matches

QUERY_PATHS = {"query", "query_range", "query_exemplars"}
GRAFANA_LOGIN_PREFIX = "user-"


def grafana_login(user) -> str:
    return f"{GRAFANA_LOGIN_PREFIX}{user.pk}"


def _user_for_login(login: str):
    user_id = login.removeprefix(GRAFANA_LOGIN_PREFIX)
    if not login.startswith(GRAFANA_LOGIN_PREFIX) or not user_id.isdigit():
        return None
    return get_user_model().objects.filter(pk=int(user_id), is_active=True).first()
SERIES_PATHS = {"series", "labels"}


class TenantQueryError(ValueError):
    pass


def promql_for_owner(query: str, owner: str) -> str:
    """`query` with every vector selector limited to `owner`'s series."""
    try:
        expression = promql_parser.parse(query)
    except ValueError as error:
        raise TenantQueryError(f"bad query: {error}") from None
    owner_matcher = "owner=" + json.dumps(owner)

    def limit(node):
        if not isinstance(node, promql_parser.VectorSelector):
            return None
        if node.matchers.or_matchers:
            raise TenantQueryError("selectors with `or` matchers are not supported")
        kept = [str(m) for m in node.matchers.matchers if m.name != "owner"]
        text = str(node)
        modifiers = text[text.rindex("}") + 1 :] if "}" in text else text[len(node.name or "") :]
        return promql_parser.parse(f"{node.name or ''}{{{','.join([*kept, owner_matcher])}}}{modifiers}")

    try:
        return str(promql_parser.transform(expression, pre_visit=limit))
    except ValueError as error:
        raise TenantQueryError(str(error)) from None


def _error(status: int, message: str) -> JsonResponse:
    # Prometheus' own error shape, which Grafana shows to the user.
    return JsonResponse({"status": "error", "errorType": "bad_data", "error": message}, status=status)


@csrf_exempt
def tenant_prometheus_view(request, api_path: str):
    if not bearer_matches(request, settings.QM_GRAFANA_DATASOURCE_TOKEN):
        raise Http404
    user = _user_for_login(request.headers.get("X-Grafana-User", ""))
    if user is None:
        return _error(403, "unknown Grafana user")
    params = list((request.POST if request.method == "POST" else request.GET).lists())
    name = api_path.split("/")[0]
    if not user.is_staff:
        if name not in QUERY_PATHS | SERIES_PATHS and not (
            api_path.startswith("label/") and api_path.endswith("/values")
        ):
            return _error(403, f"/api/v1/{api_path} is not available")
        try:
            params = _limited(params, name, str(user.pk))
        except TenantQueryError as error:
            return _error(400, str(error))
    body = urllib.parse.urlencode([(k, v) for k, values in params for v in values]).encode()
    upstream = urllib.request.Request(  # noqa: S310 (the platform's own Prometheus)
        f"{settings.QM_PROMETHEUS_URL.rstrip('/')}/api/v1/{api_path}",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(upstream, timeout=30) as response:  # noqa: S310
            return HttpResponse(response.read(), status=response.status, content_type="application/json")
    except urllib.error.HTTPError as error:
        return HttpResponse(error.read(), status=error.code, content_type="application/json")
    except OSError:
        return _error(503, "Prometheus is not answering")


def _limited(params: list[tuple[str, list[str]]], name: str, owner: str) -> list[tuple[str, list[str]]]:
    result, matched = [], False
    for key, values in params:
        if key == "query" and name in QUERY_PATHS:
            values = [promql_for_owner(v, owner) for v in values]
        elif key == "match[]":
            values, matched = [promql_for_owner(v, owner) for v in values], True
        result.append((key, values))
    if name in QUERY_PATHS and not any(k == "query" for k, _ in result):
        raise TenantQueryError("query is required")
    if name not in QUERY_PATHS and not matched:
        result.append(("match[]", ["{owner=" + json.dumps(owner) + "}"]))
    return result


def grafana_auth_view(request):
    """Traefik forward-auth for /grafana: the portal session decides who the Grafana user is."""
    # A half-signed-in user (second factor pending) never gets here: accounts' middleware sends
    # them to the code step first.
    user = request.user
    if not user.is_authenticated:
        after = urllib.parse.quote(request.headers.get("X-Forwarded-Uri", "/grafana/"))
        return HttpResponseRedirect(f"{settings.QM_PUBLIC_URL}{reverse('account_login')}?next={after}")
    response = HttpResponse(status=200)
    response["X-WEBAUTH-USER"] = grafana_login(user)
    response["X-WEBAUTH-EMAIL"] = user.email
    response["X-WEBAUTH-ROLE"] = "Admin" if user.is_staff else "Viewer"
    return response
