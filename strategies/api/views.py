"""The strategy advisor: start a run (on the engine's candles or an uploaded CSV), follow its
progress, list runs, and apply a recommendation (a config change through the engine's validation)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from instances import selectors as instance_selectors
from quantmesh.api import pagination
from quantmesh.api.serializers import ErrorSerializer
from quantmesh.errors import ServiceError

from .. import selectors, services
from .serializers import AdviceApplyInputSerializer, AdviceRunOutputSerializer, AdviceRunStartInputSerializer

PLAN_REFUSAL = OpenApiResponse(
    ErrorSerializer,
    description="plan_upgrade_required: the plan lacks ai_strategy (details.plan names one that has it)",
)
NOT_RUNNING = OpenApiResponse(
    ErrorSerializer, description="instance_not_running or engine_unavailable: the engine must run and answer"
)


def _instance(request, instance_id: str):
    instance = instance_selectors.instance_get(owner=request.user, instance_id=instance_id)
    if instance is None:
        raise ServiceError(code="not_found", message=f"No instance {instance_id}.", status=404)
    return instance


def _run(request, instance_id: str, run_id: str):
    run = selectors.advice_run_get(instance=_instance(request, instance_id), run_id=run_id)
    if run is None:
        raise ServiceError(code="not_found", message=f"No advisor run {run_id} of {instance_id}.", status=404)
    return run


class AdviceRunListApi(APIView):
    @extend_schema(
        parameters=pagination.PARAMETERS,
        responses=AdviceRunOutputSerializer(many=True),
        operation_id="advice_list",
        description="The instance's advisor runs, newest first.",
    )
    def get(self, request, instance_id: str):
        page = pagination.cursor_page(request, selectors.advice_run_list(instance=_instance(request, instance_id)))
        return Response(AdviceRunOutputSerializer(page.items, many=True).data, headers=page.headers)

    @extend_schema(
        request=AdviceRunStartInputSerializer,
        responses={202: AdviceRunOutputSerializer, 403: PLAN_REFUSAL, 409: NOT_RUNNING},
        operation_id="advice_start",
        description="Start the strategy advisor (Adaptive strategy · AI-tuned): it backtests candidate grid and "
        "adaptive parameter sets on recent candles with a walk-forward split, in the background. Follow it "
        "with GET …/advice/{run_id}.",
    )
    def post(self, request, instance_id: str):
        instance = _instance(request, instance_id)
        data = AdviceRunStartInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        run = services.advice_run_start(
            instance=instance,
            actor=request.user,
            symbol=values.get("symbol"),
            candles=values["candles"],
            seed=values["seed"],
            train_fraction=values["train_fraction"],
            fee_rate=values.get("fee_rate"),
            csv_text=values.get("csv", ""),
        )
        run.refresh_from_db()  # with tasks run in process it may be done already
        return Response(AdviceRunOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class AdviceRunDetailApi(APIView):
    @extend_schema(responses=AdviceRunOutputSerializer, operation_id="advice_get")
    def get(self, request, instance_id: str, run_id: str):
        return Response(AdviceRunOutputSerializer(_run(request, instance_id, run_id)).data)


class AdviceApplyApi(APIView):
    @extend_schema(
        request=AdviceApplyInputSerializer,
        responses={
            200: AdviceRunOutputSerializer,
            400: OpenApiResponse(
                ErrorSerializer, description="invalid_config (the engine's errors) or a bad candidate"
            ),
            403: PLAN_REFUSAL,
            409: OpenApiResponse(
                ErrorSerializer, description="advice_not_ready, instance_not_running, engine_unavailable"
            ),
        },
        operation_id="advice_apply",
        description="Apply the recommended candidate (or `candidate`) to the instance: one configuration change, "
        "validated by the engine like any other; the engine restarts its traders with it.",
    )
    def post(self, request, instance_id: str, run_id: str):
        run = _run(request, instance_id, run_id)
        data = AdviceApplyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.advice_apply(run=run, actor=request.user, candidate=data.validated_data.get("candidate"))
        return Response(AdviceRunOutputSerializer(run).data)
