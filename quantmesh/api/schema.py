"""The OpenAPI schema says exactly what the API does (drf-spectacular's AutoSchema, two changes).

- Request bodies are JSON only. The curl-compatibility parser (`CurlFormJSONParser`) reads JSON
  sent with curl's default form label; it does not accept form encoding, so the schema must not
  offer it (generated clients would send form fields and be refused).
- Public calls declare no security, so a client can log in before it has a token.
- Every operation documents the errors it can answer, in the one error shape, so that a client
  generated from the schema parses them and schemathesis can check every answer's status code.
"""

from __future__ import annotations

from drf_spectacular import openapi

from quantmesh.api.serializers import ErrorSerializer

JSON = "application/json"

# What any API call can answer: no or a bad token, no permission, throttled, a dependency down.
ALWAYS = ("401", "403", "429", "503")
# Calls that change something: a bad or oversized body, a state that forbids the change.
WRITES = ("400", "409", "413")
# Billing changes may need a payment first (402 payment_required).
EXTRA_BY_PREFIX = {"/api/billing/subscriptions/": ("402",)}


class AutoSchema(openapi.AutoSchema):
    def map_parsers(self) -> list[str]:
        return [JSON]

    def get_auth(self) -> list[dict]:
        # A public call (login, plans) takes no credentials: `security: []`, not "optional" ([{}]),
        # so generated clients let it be called without a token.
        return super().get_auth() if self.view.get_authenticators() else []

    def _error_codes(self) -> set[str]:
        codes = set(ALWAYS)
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            codes.update(WRITES)
            # (DELETE takes no body: asking for its serializer would make spectacular guess one.)
            if self.method != "DELETE" and self.get_request_serializer() is not None:
                codes.add("415")
            for prefix, extra in EXTRA_BY_PREFIX.items():
                if self.path.startswith(prefix):
                    codes.update(extra)
        if any(p["in"] == "query" for p in self._get_parameters()):
            codes.add("400")  # a query parameter out of range
        if "{" in self.path:
            codes.add("404")  # an unknown or another customer's object
        if "{instance_id}" in self.path:
            codes.add("409")  # the instance is not in a state to answer (e.g. metrics of a stopped one)
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in sorted(self._error_codes() - set(responses)):
            responses[code] = self._get_response_for_code(ErrorSerializer, code, direction=direction)
        return responses
