from django.urls import path

from . import views

urlpatterns = [
    path("instances/<str:instance_id>/advice", views.AdviceRunListApi.as_view(), name="advice-list"),
    path("instances/<str:instance_id>/advice/<str:run_id>", views.AdviceRunDetailApi.as_view(), name="advice-detail"),
    path("instances/<str:instance_id>/advice/<str:run_id>/apply", views.AdviceApplyApi.as_view(), name="advice-apply"),
]
