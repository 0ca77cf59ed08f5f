from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import services
from billing.selectors import invoice_queryset, invoice_rows, plan_list, subscription_view
from quantmesh.api import pagination

from .serializers import (
    InvoiceOutputSerializer,
    PlanOutputSerializer,
    SubscriptionCancelInputSerializer,
    SubscriptionCreateInputSerializer,
    SubscriptionCreateOutputSerializer,
    SubscriptionOutputSerializer,
    SubscriptionUpdatePlanInputSerializer,
)


class PlanListApi(APIView):
    """The plan catalogue; public, so the pricing page and prospects can read it."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses=PlanOutputSerializer(many=True), operation_id="billing_plans_list")
    def get(self, request):
        return Response(PlanOutputSerializer(plan_list(), many=True).data)


class SubscriptionApi(APIView):
    @extend_schema(responses=SubscriptionOutputSerializer, operation_id="billing_subscription_get")
    def get(self, request):
        return Response(SubscriptionOutputSerializer(subscription_view(user=request.user)).data)


class SubscriptionCreateApi(APIView):
    @extend_schema(
        request=SubscriptionCreateInputSerializer,
        responses={201: SubscriptionCreateOutputSerializer, 202: SubscriptionCreateOutputSerializer},
        operation_id="billing_subscription_create",
        description="With Stripe configured: 202 and a `checkout_url` to pay at; the plan starts when the "
        "payment succeeds. With the local provider: 201, the plan is granted at once.",
    )
    def post(self, request):
        data = SubscriptionCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        checkout_url = services.subscription_create(
            user=request.user, plan_code=data.validated_data["plan"], interval=data.validated_data["interval"]
        )
        body = {**subscription_view(user=request.user), "checkout_url": checkout_url}
        return Response(SubscriptionCreateOutputSerializer(body).data, status=202 if checkout_url else 201)


class SubscriptionUpdatePlanApi(APIView):
    @extend_schema(
        request=SubscriptionUpdatePlanInputSerializer,
        responses=SubscriptionOutputSerializer,
        operation_id="billing_subscription_update_plan",
        description="An upgrade (or monthly → yearly) is invoiced at once and starts when paid "
        "(`pending_change.invoice_url`); a downgrade (or yearly → monthly) starts when the paid period ends.",
    )
    def post(self, request):
        data = SubscriptionUpdatePlanInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.subscription_change_plan(
            user=request.user,
            new_plan_code=data.validated_data["new_plan"],
            interval=data.validated_data.get("interval"),
        )
        return Response(SubscriptionOutputSerializer(subscription_view(user=request.user)).data)


class SubscriptionCancelApi(APIView):
    @extend_schema(
        request=SubscriptionCancelInputSerializer,
        responses=SubscriptionOutputSerializer,
        operation_id="billing_subscription_cancel",
    )
    def post(self, request):
        data = SubscriptionCancelInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.subscription_cancel(user=request.user, immediately=data.validated_data["immediately"])
        return Response(SubscriptionOutputSerializer(subscription_view(user=request.user)).data)


class InvoiceListApi(APIView):
    @extend_schema(
        parameters=pagination.PARAMETERS,
        responses=InvoiceOutputSerializer(many=True),
        operation_id="billing_invoices_list",
    )
    def get(self, request):
        page = pagination.cursor_page(request, invoice_queryset(user=request.user), ordering=("-created", "-id"))
        return Response(InvoiceOutputSerializer(invoice_rows(page.items), many=True).data, headers=page.headers)
