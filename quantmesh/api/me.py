"""GET /api/auth/me: the account (accounts) with its plan (billing). It lives in the portal core,
which composes the apps, because accounts never imports billing (pyproject.toml's import contracts)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors
from accounts.api.serializers import MeOutputSerializer
from billing.selectors import entitlements_for


class MeApi(APIView):
    @extend_schema(responses=MeOutputSerializer, operation_id="auth_me")
    def get(self, request):
        user = request.user
        plan = entitlements_for(user).plan
        return Response(
            MeOutputSerializer(
                {
                    "id": user.pk,
                    "email": user.email,
                    "full_name": user.full_name,
                    "two_factor_enabled": selectors.user_has_two_factor(user),
                    "date_joined": user.date_joined,
                    "plan": plan.code if plan else None,
                }
            ).data
        )
