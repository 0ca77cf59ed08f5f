from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from instances import selectors, services, trading
from instances.events import event_view
from instances.models import Instance
from instances.presentation import reason_text
from instances.services import domains
from quantmesh.api import pagination
from quantmesh.api.serializers import ErrorSerializer
from quantmesh.errors import ServiceError

from .serializers import (
    DomainInputSerializer,
    DomainOutputSerializer,
    EventOutputSerializer,
    InstanceCreateInputSerializer,
    InstanceMigrateInputSerializer,
    InstanceOutputSerializer,
    LogsOutputSerializer,
    LogsQuerySerializer,
    MetricsOutputSerializer,
    RegionOutputSerializer,
    TradingOutputSerializer,
    TradingQuerySerializer,
)
from .waiting import SettlingResponse

WAIT_PARAMETER = OpenApiParameter(
    "wait", int, description="1 (default): answer once the change is done (bounded); 0: answer at once."
)


def _get_instance(request, instance_id: str) -> Instance:
    instance = selectors.instance_get(owner=request.user, instance_id=instance_id)
    if instance is None:
        raise ServiceError(code="not_found", message=f"No instance {instance_id}.", status=404)
    return instance


def _wait_param(request) -> bool:
    wait = request.query_params.get("wait", "1")
    if wait not in {"0", "1"}:
        raise ServiceError(code="invalid_request", message="wait: must be 0 or 1.", details={"wait": ["0 or 1"]})
    return wait == "1"


def _answer(instance: Instance, *, wait: bool, status_code: int = status.HTTP_200_OK) -> Response:
    """The instance as it is now; with wait, once a worker has carried the change out (bounded),
    waiting on the event loop rather than in this thread (see waiting.py)."""
    instance.refresh_from_db()
    if wait and not instance.settled:
        return SettlingResponse(instance, status=status_code)
    return Response(InstanceOutputSerializer(instance).data, status=status_code)


class InstanceCreateApi(APIView):
    @extend_schema(
        request=InstanceCreateInputSerializer,
        responses={201: InstanceOutputSerializer},
        parameters=[
            WAIT_PARAMETER,
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, description="Makes retries safe."),
        ],
        operation_id="instances_create",
    )
    def post(self, request):
        data = InstanceCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > 128:
            raise ServiceError(code="invalid_request", message="Idempotency-Key: at most 128 characters.")
        wait = _wait_param(request)
        instance = services.instance_create(
            owner=request.user,
            plan_code=data.validated_data["plan"],
            idempotency_key=key,
            region=data.validated_data.get("region"),
        )
        return _answer(instance, wait=wait, status_code=status.HTTP_201_CREATED)


class InstanceListApi(APIView):
    @extend_schema(
        parameters=pagination.PARAMETERS,
        responses=InstanceOutputSerializer(many=True),
        operation_id="instances_list",
    )
    def get(self, request):
        page = pagination.cursor_page(
            request, selectors.instance_list_with_plan_code(owner=request.user), ordering=("-created_at",)
        )
        return Response(InstanceOutputSerializer(page.items, many=True).data, headers=page.headers)


class InstanceDetailApi(APIView):
    @extend_schema(responses=InstanceOutputSerializer, operation_id="instances_retrieve")
    def get(self, request, instance_id: str):
        return Response(InstanceOutputSerializer(_get_instance(request, instance_id)).data)

    @extend_schema(
        parameters=[WAIT_PARAMETER], responses={200: InstanceOutputSerializer}, operation_id="instances_delete"
    )
    def delete(self, request, instance_id: str):
        wait = _wait_param(request)
        instance = services.instance_delete(instance=_get_instance(request, instance_id), actor=request.user)
        return _answer(instance, wait=wait)


def _action_view(action, operation_id: str):
    class InstanceActionApi(APIView):
        @extend_schema(
            request=None, parameters=[WAIT_PARAMETER], responses=InstanceOutputSerializer, operation_id=operation_id
        )
        def post(self, request, instance_id: str):
            wait = _wait_param(request)
            instance = action(instance=_get_instance(request, instance_id), actor=request.user)
            return _answer(instance, wait=wait)

    InstanceActionApi.__name__ = f"Instance{operation_id.split('_')[-1].title()}Api"
    return InstanceActionApi


InstanceStopApi = _action_view(services.instance_stop, "instances_stop")
InstanceStartApi = _action_view(services.instance_start, "instances_start")
InstanceRestartApi = _action_view(services.instance_restart, "instances_restart")


class InstanceMigrateApi(APIView):
    @extend_schema(
        request=InstanceMigrateInputSerializer,
        responses={202: InstanceOutputSerializer},
        operation_id="instances_migrate",
    )
    def post(self, request, instance_id: str):
        instance = _get_instance(request, instance_id)  # another tenant's id: 404 before any validation
        data = InstanceMigrateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        region = data.validated_data["region"]
        instance = services.instance_migrate(instance=instance, region=region, actor=request.user)
        return Response(InstanceOutputSerializer(instance).data, status=status.HTTP_202_ACCEPTED)


class RegionListApi(APIView):
    @extend_schema(responses=RegionOutputSerializer(many=True), operation_id="regions_list")
    def get(self, request):
        regions = [{"code": code, "name": name} for code, name in settings.QM_REGIONS.items()]
        return Response(RegionOutputSerializer(regions, many=True).data)


class InstanceLogsApi(APIView):
    @extend_schema(parameters=[LogsQuerySerializer], responses=LogsOutputSerializer, operation_id="instances_logs")
    def get(self, request, instance_id: str):
        query = LogsQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        instance = _get_instance(request, instance_id)
        lines = selectors.instance_logs(instance=instance, lines=query.validated_data["lines"])
        return Response(LogsOutputSerializer({"instance_id": instance.instance_id, "lines": lines}).data)


class InstanceMetricsApi(APIView):
    @extend_schema(responses=MetricsOutputSerializer, operation_id="instances_metrics")
    def get(self, request, instance_id: str):
        metrics = selectors.instance_metrics(instance=_get_instance(request, instance_id))
        return Response(MetricsOutputSerializer(metrics).data)


class InstanceTradingApi(APIView):
    """The trading picture: the engine's state and, while it runs, each symbol's price, position,
    PnL, open grid orders and recent fills; with the history the portal keeps (up to 7 days)."""

    @extend_schema(
        parameters=[TradingQuerySerializer], responses=TradingOutputSerializer, operation_id="instances_trading"
    )
    def get(self, request, instance_id: str):
        query = TradingQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        instance = _get_instance(request, instance_id)
        live = selectors.instance_trading(instance=instance)
        state, cause, reason = trading.trading_view(instance)
        body = {
            "instance_id": instance.instance_id,
            "status": instance.status,
            "trading_state": state,
            "trading_cause": cause,
            "trading_reason": reason,
            "trading_reason_text": reason_text(reason),
            "symbols": (live or {}).get("symbols", []),
            "history": trading.trading_history(instance=instance, days=query.validated_data["days"]),
        }
        return Response(TradingOutputSerializer(body).data)


class InstanceExportApi(APIView):
    """The engine's exports through the portal (`trades` as CSV, `config` as YAML with secrets masked)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("since", str, description="trades: ISO-8601 UTC, inclusive"),
            OpenApiParameter("until", str, description="trades: ISO-8601 UTC, exclusive"),
            OpenApiParameter("symbol", str, description="trades: e.g. BTC/USDT"),
        ],
        responses={(200, "text/csv"): str, 409: ErrorSerializer, 502: ErrorSerializer},
        operation_id="instances_export",
    )
    def get(self, request, instance_id: str, kind: str):
        instance = _get_instance(request, instance_id)
        query = {k: v for k, v in request.query_params.items() if k in {"since", "until", "symbol"}}
        reply = selectors.instance_export(instance=instance, kind=kind, query=query)
        if reply.status != 200:
            error = reply.json().get("error", {}) if reply.content_type == "application/json" else {}
            raise ServiceError(
                code=error.get("code", "export_failed"),
                message=error.get("message", "The instance could not produce the export."),
                status=400 if reply.status == 400 else 502,
            )
        extension = "csv" if kind == "trades" else "yaml"
        response = HttpResponse(reply.body, content_type=reply.content_type)
        response["Content-Disposition"] = f'attachment; filename="{instance.instance_id}-{kind}.{extension}"'
        return response


def _events_response(request, events) -> Response:
    page = pagination.cursor_page(request, events)
    return Response(EventOutputSerializer([event_view(e) for e in page.items], many=True).data, headers=page.headers)


class InstanceEventListApi(APIView):
    """What happened to the instance, newest first; the live websocket pushes the same as `event` messages."""

    @extend_schema(
        parameters=pagination.PARAMETERS,
        responses=EventOutputSerializer(many=True),
        operation_id="instances_events",
    )
    def get(self, request, instance_id: str):
        return _events_response(request, selectors.instance_event_list(instance=_get_instance(request, instance_id)))


class AccountEventListApi(APIView):
    """What happened to every instance of the account (deleted ones too), newest first."""

    @extend_schema(
        parameters=pagination.PARAMETERS,
        responses=EventOutputSerializer(many=True),
        operation_id="events_list",
    )
    def get(self, request):
        return _events_response(request, selectors.account_event_list(owner=request.user))


def _domain_view(custom) -> dict:
    return {
        "domain": custom.domain,
        "cname_target": domains.cname_target(custom.instance),
        "verified": custom.verified_at is not None,
        "verified_at": custom.verified_at,
        "last_checked_at": custom.last_checked_at,
        "last_error": custom.last_error,
    }


def _get_domain(request, instance_id: str, domain: str):
    instance = _get_instance(request, instance_id)
    custom = instance.domains.filter(domain=domain.lower()).first()
    if custom is None:
        raise ServiceError(code="not_found", message=f"No domain {domain} on {instance_id}.", status=404)
    return custom


class InstanceDomainListApi(APIView):
    """Custom domains of an instance (professional and above): CNAME the domain to `cname_target`."""

    @extend_schema(responses=DomainOutputSerializer(many=True), operation_id="domains_list")
    def get(self, request, instance_id: str):
        instance = _get_instance(request, instance_id)
        return Response(DomainOutputSerializer([_domain_view(d) for d in instance.domains.all()], many=True).data)

    @extend_schema(request=DomainInputSerializer, responses={201: DomainOutputSerializer}, operation_id="domains_add")
    def post(self, request, instance_id: str):
        """Adds the domain (pending); a worker checks its CNAME right after, and again periodically."""
        instance = _get_instance(request, instance_id)  # another tenant's id: 404 before anything else
        data = DomainInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        custom = domains.domain_add(instance=instance, domain=data.validated_data["domain"], actor=request.user)
        return Response(DomainOutputSerializer(_domain_view(custom)).data, status=status.HTTP_201_CREATED)


class InstanceDomainApi(APIView):
    @extend_schema(request=None, responses={202: DomainOutputSerializer}, operation_id="domains_verify")
    def post(self, request, instance_id: str, domain: str):
        """Asks for a new DNS check (done by a worker within seconds); answers the current state."""
        custom = _get_domain(request, instance_id, domain)
        domains.domain_check_enqueue(domain_id=custom.pk)
        return Response(DomainOutputSerializer(_domain_view(custom)).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={204: None}, operation_id="domains_remove")
    def delete(self, request, instance_id: str, domain: str):
        domains.domain_remove(custom=_get_domain(request, instance_id, domain), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
