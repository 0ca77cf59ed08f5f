"""Who may use the adaptive strategy and the strategy advisor: plans with the `ai_strategy` feature
(billing owns entitlements; this asks its selectors). Config writes that reach an engine through the
portal's instance proxy are screened here too, so `strategy.kind: adaptive` is refused there as well."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from asgiref.sync import sync_to_async
from django.utils.translation import gettext_lazy

from billing.selectors import entitlements_for, plan_list
from quantmesh.errors import ServiceError

AI_STRATEGY = "ai_strategy"
ADAPTIVE = "adaptive"
FEATURE_NAME = gettext_lazy("Adaptive strategy · AI-tuned")
# The engine's configuration writes (its API and its page's form), as they arrive at the proxy.
CONFIG_WRITES = {("PUT", "/api/config"), ("POST", "/config")}
CONFIG_BODY_LIMIT = 256 * 1024  # the engine's own client_max_size


def plan_with_ai_strategy():
    """The cheapest plan that includes the feature (the one to name when refusing)."""
    return next((plan for plan in plan_list() if AI_STRATEGY in plan.features), None)


def ai_strategy_allowed(user) -> bool:
    return entitlements_for(user).has_feature(AI_STRATEGY)


def refusal(user) -> dict:
    """The 403 error body for a user whose plan lacks the feature: it names the plan that has it."""
    rights = entitlements_for(user)
    needed = plan_with_ai_strategy()
    current = rights.plan.name if rights.plan else "none"
    if rights.trial:
        current = f"{current} (trial)"
    needed_name = needed.name if needed else "none"
    message = (
        f"The adaptive strategy and the strategy advisor (Adaptive strategy · AI-tuned) come with the "
        f"{needed_name} plan and above; your plan: {current}. Upgrade under Billing to use them."
    )
    return {
        "code": "plan_upgrade_required",
        "message": message,
        "details": {
            "feature": AI_STRATEGY,
            "plan": needed.code if needed else None,
            "plan_name": needed_name,
            "current_plan": rights.plan.code if rights.plan else None,
        },
    }


def ai_strategy_require(*, user) -> None:
    if not ai_strategy_allowed(user):
        error = refusal(user)
        raise ServiceError(code=error["code"], message=error["message"], details=error["details"], status=403)


def _strategy_kind(config) -> str | None:
    strategy = config.get("strategy") if isinstance(config, dict) else None
    return strategy.get("kind") if isinstance(strategy, dict) else None


def selects_adaptive(*, content_type: str, body: bytes) -> bool:
    """Whether a config write asks for the adaptive strategy: `{"config": {"strategy": {"kind":
    "adaptive"}}}` in the API's JSON, or any form field set to `adaptive` (no other setting takes that
    word). A body that cannot be read is left to the engine, which refuses it."""
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json":
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return False
        return isinstance(data, dict) and _strategy_kind(data.get("config")) == ADAPTIVE
    if media == "application/x-www-form-urlencoded":
        text = body.decode("utf-8", errors="replace")
        return any(value.strip().lower() == ADAPTIVE for _, value in parse_qsl(text, keep_blank_values=True))
    return ADAPTIVE.encode() in body.lower()


async def screen_config_write(scope, receive, *, owner):
    """For the proxy: read a config write's body and refuse `adaptive` to a plan without the feature.
    Returns (status, error body, None) to answer instead, or (None, None, receive) replaying the body
    to the engine unchanged."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        more = message.get("more_body", False)
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > CONFIG_BODY_LIMIT:
            limit = {"limit": CONFIG_BODY_LIMIT}
            too_large = {"code": "payload_too_large", "message": "The configuration is too large.", "details": limit}
            return 413, too_large, None
    body = b"".join(chunks)
    content_type = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"content-type"), "")
    if selects_adaptive(content_type=content_type, body=body) and not await sync_to_async(ai_strategy_allowed)(owner):
        return 403, await sync_to_async(refusal)(owner), None

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    return None, None, replay
