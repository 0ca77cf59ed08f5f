from __future__ import annotations

from rest_framework import serializers

from quantmesh.api.serializers import StrictInputSerializer

from ..services import MAX_CANDLES, MIN_CANDLES

CSV_MAX_CHARS = 1024 * 1024  # the request body limit (DATA_UPLOAD_MAX_MEMORY_SIZE) bounds it anyway


class AdviceRunStartInputSerializer(StrictInputSerializer):
    symbol = serializers.CharField(
        max_length=40, required=False, help_text="The market to study (default: the instance's first symbol)."
    )
    candles = serializers.IntegerField(
        min_value=MIN_CANDLES,
        max_value=MAX_CANDLES,
        default=MAX_CANDLES,
        help_text="How many recent one-minute candles to read from the instance's engine.",
    )
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=42, help_text="Same seed, same advice.")
    train_fraction = serializers.FloatField(
        min_value=0.5,
        max_value=0.9,
        default=0.7,
        help_text="Walk-forward split: candidates are chosen on this earlier share and reported on the rest.",
    )
    fee_rate = serializers.FloatField(
        min_value=0,
        max_value=0.01,
        required=False,
        help_text="Fee per fill as a fraction (default: the instance's paper fee rate, 0.001).",
    )
    csv = serializers.CharField(
        max_length=CSV_MAX_CHARS,
        required=False,
        allow_blank=False,
        trim_whitespace=False,
        help_text="Your own candles instead of the engine's: CSV text with the header "
        "ts,open,high,low,close,volume (ts in ms or ISO-8601), at least 500 rows.",
    )


class AdviceApplyInputSerializer(StrictInputSerializer):
    candidate = serializers.IntegerField(
        min_value=0,
        required=False,
        help_text="The candidate to apply (index in report.candidates; default: the recommended one).",
    )


class AdviceProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField(help_text="0 until the advisor knows how many candidates it tests.")


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


class AdviceRunOutputSerializer(serializers.Serializer):
    run_id = serializers.CharField()
    instance_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["queued", "running", "done", "failed"])
    source = serializers.ChoiceField(
        choices=["", "exchange", "paper", "upload"],
        help_text="Where the candles came from: the exchange (live), the paper exchange's price path, or an "
        "uploaded CSV; empty until known.",
    )
    params = serializers.DictField(help_text="symbol, limit, timeframe, seed, train_fraction, fee_rate.")
    progress = AdviceProgressSerializer()
    report = serializers.DictField(
        allow_null=True,
        help_text="When done: candidates (kind, strategy, train and test metrics: pnl_after_fees, fees, fills, "
        "max_drawdown, peak_inventory; equity_curve on the held-out part), recommended (index), split_ts, "
        "fee_rate, seed, symbol, prices ([ts, close]).",
    )
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    applied_candidate = serializers.IntegerField(allow_null=True)
    applied_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, run):
        return {
            "run_id": run.run_id,
            "instance_id": run.instance.instance_id,
            "status": run.status,
            "source": run.source,
            "params": run.params,
            "progress": {"done": run.progress_done, "total": run.progress_total},
            "report": run.report,
            "error": run.error,
            "created_at": _iso(run.created_at),
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "applied_candidate": run.applied_candidate,
            "applied_at": _iso(run.applied_at),
        }
