from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.models import ApiToken
from quantmesh.api import pagination
from quantmesh.errors import ServiceError

from .serializers import (
    LoginInputSerializer,
    TokenCreatedOutputSerializer,
    TokenCreateInputSerializer,
    TokenListOutputSerializer,
    TokenOutputSerializer,
)


class LoginApi(APIView):
    """Exchange e-mail, password (and the 2FA code, when enabled) for a bearer token."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(request=LoginInputSerializer, responses=TokenOutputSerializer, operation_id="auth_login")
    def post(self, request):
        data = LoginInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, raw = services.api_login(
            email=data.validated_data["email"],
            password=data.validated_data["password"],
            otp=data.validated_data.get("otp") or None,
            request=request._request,
        )
        return Response(TokenOutputSerializer({"token": raw, "expires_at": token.expires_at}).data)


class LogoutApi(APIView):
    """Revoke the token this request was made with."""

    @extend_schema(request=None, responses={204: None}, operation_id="auth_logout")
    def post(self, request):
        if isinstance(request.auth, ApiToken):
            services.api_token_revoke(token=request.auth, request=request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenListCreateApi(APIView):
    @extend_schema(
        parameters=pagination.PARAMETERS,
        responses=TokenListOutputSerializer(many=True),
        operation_id="auth_tokens_list",
    )
    def get(self, request):
        current = request.auth.pk if isinstance(request.auth, ApiToken) else None
        page = pagination.cursor_page(request, selectors.api_token_list(user=request.user))
        tokens = TokenListOutputSerializer(page.items, many=True, context={"current_token_id": current})
        return Response(tokens.data, headers=page.headers)

    @extend_schema(
        request=TokenCreateInputSerializer,
        responses={201: TokenCreatedOutputSerializer},
        operation_id="auth_tokens_create",
    )
    def post(self, request):
        data = TokenCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        days = data.validated_data.get("expires_in_days")
        token, raw = services.api_token_create(
            user=request.user,
            name=data.validated_data["name"],
            ttl=timedelta(days=days) if days else None,
            request=request._request,
        )
        body = {
            "id": token.pk,
            "name": token.name,
            "token": raw,
            "prefix": token.prefix,
            "created_at": token.created_at,
            "expires_at": token.expires_at,
        }
        return Response(TokenCreatedOutputSerializer(body).data, status=status.HTTP_201_CREATED)


class TokenDetailApi(APIView):
    @extend_schema(responses={204: None}, operation_id="auth_tokens_revoke")
    def delete(self, request, token_id: int):
        token = selectors.api_token_get(user=request.user, token_id=token_id)
        if token is None or token.revoked_at is not None:
            raise ServiceError(code="not_found", message="No such token.", status=404)
        services.api_token_revoke(token=token, request=request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)
