from django.urls import path

from . import views

urlpatterns = [
    path("alerts", views.AlertListApi.as_view(), name="alerts-list"),
    path("alerts/settings", views.AlertSettingsApi.as_view(), name="alerts-settings"),
]
