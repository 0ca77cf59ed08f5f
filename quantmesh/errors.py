"""What a service raises when it refuses: a stable code, a sentence naming the problem, details, and
the HTTP status the API answers with. It knows nothing of HTTP frameworks: the API's exception
handler (quantmesh/api/errors.py) turns it into the one error shape, console views into a message or
a form error, commands and tasks into their own output."""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal with a machine-readable `code` (e.g. "plan_does_not_fit"), a `message` for people,
    `details` for programs, and the `status` the API answers with. A `retry_after` detail (seconds)
    is also sent as the Retry-After header."""

    def __init__(self, *, code: str, message: str, details: dict | None = None, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.status = status


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    """The one error shape of the API: {"error": {"code", "message", "details"}}."""
    return {"error": {"code": code, "message": message, "details": details or {}}}
