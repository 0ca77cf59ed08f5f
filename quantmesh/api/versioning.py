"""The API's version, stated on every /api/ answer (`X-API-Version`); the policy is in the README."""

from __future__ import annotations

API_VERSION = "1"


class ApiVersionMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith("/api/"):
            response["X-API-Version"] = API_VERSION
        return response
