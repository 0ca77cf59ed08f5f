"""One error shape for every API failure, {"error": {"code", "message", "details"}}: services'
refusals (ServiceError), DRF's own exceptions, outages and bugs."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from quantmesh.errors import ServiceError, error_body
from quantmesh.outages import MESSAGE as OUTAGE_MESSAGE
from quantmesh.outages import RETRY_AFTER_SECONDS, is_outage

logger = logging.getLogger(__name__)

_CODE_BY_EXCEPTION = [
    (exceptions.ParseError, "malformed_request"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "authentication_failed"),
    (exceptions.PermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.Throttled, "rate_limited"),
    (exceptions.ValidationError, "invalid_request"),
]


def _validation_message(detail) -> str:
    """A sentence naming the first bad field, e.g. 'plan: "gold" is not a valid choice.'."""
    if isinstance(detail, dict):
        for field, errors in detail.items():
            first = errors[0] if isinstance(errors, list) and errors else errors
            if isinstance(first, dict):
                return f"{field}.{_validation_message(first)}"
            return f"{field}: {first}" if field != "non_field_errors" else str(first)
    if isinstance(detail, list) and detail:
        return str(detail[0])
    return str(detail)


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, ServiceError):
        retry_after = exc.details.get("retry_after")
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status, headers=headers)

    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _CODE_BY_EXCEPTION if isinstance(exc, cls)), "error")
        headers = {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(int(exc.wait + 0.999))
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if isinstance(exc, exceptions.ValidationError):
            details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            message = _validation_message(exc.detail)
        else:
            details = {}
            message = str(exc.detail)
            if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
                details = {"retry_after": int(exc.wait + 0.999)}
        return Response(error_body(code, message, details), status=exc.status_code, headers=headers)

    if is_outage(exc):
        logger.warning("API request during an outage: %s", exc)
        return Response(
            error_body("service_unavailable", OUTAGE_MESSAGE),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    logger.exception("Unhandled API error", exc_info=exc)
    return Response(
        error_body("server_error", "An internal error occurred; it has been logged."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def json_or_html(json_status: int, code: str, message: str, html_handler):
    """Django-level handler (404/500 outside DRF views): JSON on /api/, the site's page elsewhere."""

    def handler(request, *args, **kwargs):
        if _is_api(request):
            return JsonResponse(error_body(code, message), status=json_status)
        return html_handler(request, *args, **kwargs)

    return handler
