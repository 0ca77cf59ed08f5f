from __future__ import annotations

from django.db.models import QuerySet

from .models import Alert


def alert_list(*, user, limit: int | None = 50) -> QuerySet[Alert]:
    alerts = Alert.objects.filter(user=user).select_related("instance").order_by("-created_at", "-id")
    return alerts if limit is None else alerts[:limit]
