from django.urls import path

from .views import PlanListApi

urlpatterns = [
    path("plans", PlanListApi.as_view(), name="billing-plans"),
]
