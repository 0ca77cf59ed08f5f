from django.contrib import admin

from .models import Plan, Subscription


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
    list_display = ["user", "plan", "interval", "status", "provider", "current_period_end", "cancel_at_period_end"]
    list_filter = ["status", "provider", "plan", "interval"]
    search_fields = ["user__email"]
    autocomplete_fields = ["user"]
    list_select_related = ["user", "plan"]
