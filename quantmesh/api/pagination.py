"""Cursor pagination for every list that can grow, without changing the lists' shapes.

A list answers the same JSON array as before (the first page, newest first); when more follows,
the response says where in headers: `Link: <…?cursor=…>; rel="next"` (RFC 8288) and
`X-Next-Cursor: <cursor>` (pass it back as `?cursor=`). `?limit=` sets the page size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from drf_spectacular.utils import OpenApiParameter
from rest_framework import pagination

from quantmesh.errors import ServiceError

DEFAULT_LIMIT = 100
MAX_LIMIT = 500

PARAMETERS = [
    OpenApiParameter("cursor", str, description="Where the page starts: the previous page's X-Next-Cursor."),
    OpenApiParameter("limit", int, description=f"Page size, 1–{MAX_LIMIT} (default {DEFAULT_LIMIT})."),
    OpenApiParameter(
        "Link",
        str,
        OpenApiParameter.HEADER,
        response=[200],
        description='`<url>; rel="next"` when more items follow (absent on the last page).',
    ),
    OpenApiParameter(
        "X-Next-Cursor",
        str,
        OpenApiParameter.HEADER,
        response=[200],
        description="The `cursor` of the next page (absent on the last page).",
    ),
]


@dataclass
class Page:
    items: list
    headers: dict = field(default_factory=dict)


class _CursorPagination(pagination.CursorPagination):
    page_size = DEFAULT_LIMIT
    template = None

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except Exception:  # DRF answers 404 for a bad cursor; it is a bad request
            raise ServiceError(
                code="invalid_request", message="cursor: not a cursor this API gave.", details={"cursor": ["invalid"]}
            ) from None


def _limit(request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ServiceError(
            code="invalid_request",
            message=f"limit: must be a whole number from 1 to {MAX_LIMIT}.",
            details={"limit": [f"1–{MAX_LIMIT}"]},
        )
    return int(raw)


def cursor_page(request, queryset, *, ordering: tuple[str, ...] = ("-created_at", "-id")) -> Page:
    """One page of `queryset` in `ordering` (its first field must be a creation time or unique)."""
    paginator = _CursorPagination()
    paginator.page_size = _limit(request)
    paginator.ordering = ordering
    items = paginator.paginate_queryset(queryset, request)
    headers = {}
    next_link = paginator.get_next_link()
    if next_link:
        headers["Link"] = f'<{next_link}>; rel="next"'
        headers["X-Next-Cursor"] = parse_qs(urlsplit(next_link).query)["cursor"][0]
    return Page(items=items, headers=headers)
