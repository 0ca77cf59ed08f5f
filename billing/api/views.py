from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.selectors import plan_list

from .serializers import PlanOutputSerializer


class PlanListApi(APIView):
    """The plan catalogue; public, so the pricing page and prospects can read it."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses=PlanOutputSerializer(many=True), operation_id="billing_plans_list")
    def get(self, request):
        return Response(PlanOutputSerializer(plan_list(), many=True).data)
