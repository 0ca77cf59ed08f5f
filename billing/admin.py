from django.contrib import admin

from quantmesh.admin import AuditLogAdmin

from .models import BillingEvent, Plan, Referral, Subscription


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "tier",
        "price_monthly_cents",
        "price_yearly_cents",
        "cpu_limit",
        "memory_limit_mb",
        "max_trading_pairs",
        "max_instances",
        "is_active",
    ]
    list_filter = ["is_active"]
    search_fields = ["code", "name", "name_zh"]
    ordering = ["tier"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "plan",
        "interval",
        "status",
        "provider",
        "current_period_end",
        "cancel_at_period_end",
        "past_due_since",
    ]
    list_filter = ["status", "provider", "plan", "interval"]
    search_fields = ["user__email"]
    autocomplete_fields = ["user"]
    list_select_related = ["user", "plan"]


@admin.register(BillingEvent)
class BillingEventAdmin(AuditLogAdmin):
    list_display = ["created_at", "user", "kind", "source"]
    list_filter = ["kind", "source"]
    search_fields = ["user__email"]
    list_select_related = ["user"]


@admin.register(Referral)
class ReferralAdmin(admin.ModelAdmin):
    list_display = ["referrer", "referred", "created_at", "credit_cents", "currency", "credited_at"]
    list_filter = ["credited_at"]
    search_fields = ["referrer__email", "referred__email"]
    list_select_related = ["referrer", "referred"]
    readonly_fields = ["referrer", "referred", "created_at", "credited_at", "stripe_balance_transaction_id"]
