from django.urls import path

from .views import (
    InvoiceListApi,
    PlanListApi,
    SubscriptionApi,
    SubscriptionCancelApi,
    SubscriptionCreateApi,
    SubscriptionUpdatePlanApi,
)

urlpatterns = [
    path("plans", PlanListApi.as_view(), name="billing-plans"),
    path("subscriptions", SubscriptionApi.as_view(), name="billing-subscription"),
    path("subscriptions/create", SubscriptionCreateApi.as_view(), name="billing-subscription-create"),
    path("subscriptions/update-plan", SubscriptionUpdatePlanApi.as_view(), name="billing-subscription-update-plan"),
    path("subscriptions/cancel", SubscriptionCancelApi.as_view(), name="billing-subscription-cancel"),
    path("invoices", InvoiceListApi.as_view(), name="billing-invoices"),
]
