"""Words for the console: instance statuses, trading states and their causes, in the viewer's language.

The pages render them on the server; the same labels go into the page (hidden, data-label) so the
live updates in static/js use the same words, never raw codes."""

from __future__ import annotations

import re

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .models import Instance, TradingState

CAUSES = {
    "config_error": gettext_lazy("configuration error"),
    "keys_refused": gettext_lazy("exchange keys refused"),
    "exchange_unreachable": gettext_lazy("exchange unreachable"),
    "storage_error": gettext_lazy("cannot write its database"),
    "engine_not_answering": gettext_lazy("the engine does not answer"),
    "rapid_decline": gettext_lazy("rapid price decline"),
    "max_position": gettext_lazy("maximum position reached"),
    "stop_loss": gettext_lazy("stop-loss"),
    "daily_loss_limit": gettext_lazy("daily loss limit"),
}
# Colour classes (always shown with text): good, warn, bad, idle.
TONE = {
    "running": "good",
    "trading": "good",
    "paused": "warn",
    "starting": "idle",
    "provisioning": "idle",
    "pending": "idle",
    "restarting": "warn",
    "stopped": "idle",
    "deleting": "idle",
    "deleted": "idle",
    "failed": "bad",
    "error": "bad",
    "not_answering": "bad",
}


def _list_separator() -> str:
    return _(", ")


def cause_text(cause: str) -> str:
    return _list_separator().join(str(CAUSES.get(part, part)) for part in cause.split(",") if part)


def _state_with_cause() -> str:
    return _("%(state)s: %(cause)s")


def trading_text(state: str, cause: str) -> str:
    label = str(TradingState(state).label) if state in TradingState.values else state
    words = cause_text(cause)
    return _state_with_cause() % {"state": label, "cause": words} if words else label


# The engine's own reasons (engine/quantmesh_engine/app.py, exchanges/live.py), in its English:
# each known shape with its words in the viewer's language; the details inside (the validator's
# message, the exchange's error) stay as the engine wrote them.
ENGINE_REASONS = [
    (re.compile(r"invalid config: (?P<detail>.*)", re.S), gettext_lazy("invalid config: %(detail)s")),
    (
        re.compile(r"exchange error, retrying in (?P<seconds>\d+) s: (?P<detail>.*)", re.S),
        gettext_lazy("exchange error, retrying in %(seconds)s s: %(detail)s"),
    ),
    (
        re.compile(
            r"cannot write the database \((?P<detail>.*)\), trading paused; retrying in (?P<seconds>\d+) s", re.S
        ),
        gettext_lazy("cannot write the database (%(detail)s), trading paused; retrying in %(seconds)s s"),
    ),
    (
        re.compile(r"cannot read the price data: (?P<detail>.*)", re.S),
        gettext_lazy("cannot read the price data: %(detail)s"),
    ),
    (
        re.compile(r"the exchange rejected the API key: (?P<detail>.*)", re.S),
        gettext_lazy("the exchange rejected the API key: %(detail)s"),
    ),
    (
        re.compile(r"no API key for (?P<exchange>.*): enter the key and secret on the config page", re.S),
        gettext_lazy("no API key for %(exchange)s: enter the key and secret on the config page"),
    ),
    (
        re.compile(r"risk control \((?P<rules>[a-z_, ]+)\) paused buying of (?P<symbols>.*)", re.S),
        gettext_lazy("risk control (%(rules)s) paused buying of %(symbols)s"),
    ),
]


def reason_text(reason: str) -> str:
    """The engine's reason in the viewer's language when it is one the portal knows; otherwise as
    the engine wrote it (the raw reason stays in the API's trading_reason)."""
    for pattern, words in ENGINE_REASONS:
        found = pattern.fullmatch(reason or "")
        if found:
            values = found.groupdict()
            if "rules" in values:
                values["rules"] = cause_text(values["rules"].replace(" ", ""))
            return str(words) % values
    return reason


def labels() -> list[tuple[str, str]]:
    """(key, words) for the page's live updates: status-<code>, trading-<code>, cause-<code>."""
    return (
        [(f"status-{code}", str(label)) for code, label in Instance.Status.choices]
        + [(f"trading-{code}", str(label)) for code, label in TradingState.choices]
        + [(f"cause-{code}", str(label)) for code, label in CAUSES.items()]
        + [("format", _state_with_cause()), ("separator", _list_separator())]
    )


def actions_allowed(instance: Instance) -> dict[str, bool]:
    """Which lifecycle buttons make sense now (the services stay idempotent either way)."""
    S = Instance.Status
    running = instance.status == S.RUNNING
    return {
        "start": instance.status in (S.STOPPED, S.FAILED),
        "stop": running or instance.status in (S.RESTARTING, S.PROVISIONING),
        "restart": running or instance.status == S.FAILED,
    }
