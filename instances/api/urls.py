from django.urls import path, re_path

from . import views

urlpatterns = [
    path("instances", views.InstanceListApi.as_view(), name="instances-list"),
    path("instances/create", views.InstanceCreateApi.as_view(), name="instances-create"),
    path("instances/<str:instance_id>", views.InstanceDetailApi.as_view(), name="instances-detail"),
    path("instances/<str:instance_id>/stop", views.InstanceStopApi.as_view(), name="instances-stop"),
    path("instances/<str:instance_id>/start", views.InstanceStartApi.as_view(), name="instances-start"),
    path("instances/<str:instance_id>/restart", views.InstanceRestartApi.as_view(), name="instances-restart"),
    path("instances/<str:instance_id>/migrate", views.InstanceMigrateApi.as_view(), name="instances-migrate"),
    path("regions", views.RegionListApi.as_view(), name="regions-list"),
    path("instances/<str:instance_id>/logs", views.InstanceLogsApi.as_view(), name="instances-logs"),
    path("instances/<str:instance_id>/events", views.InstanceEventListApi.as_view(), name="instances-events"),
    path("events", views.AccountEventListApi.as_view(), name="events-list"),
    path("instances/<str:instance_id>/metrics", views.InstanceMetricsApi.as_view(), name="instances-metrics"),
    path("instances/<str:instance_id>/trading", views.InstanceTradingApi.as_view(), name="instances-trading"),
    path("instances/<str:instance_id>/domains", views.InstanceDomainListApi.as_view(), name="instances-domains"),
    path(
        "instances/<str:instance_id>/domains/<str:domain>",
        views.InstanceDomainApi.as_view(),
        name="instances-domain",
    ),
    re_path(
        r"^instances/(?P<instance_id>[^/]+)/export/(?P<kind>trades|config)$",
        views.InstanceExportApi.as_view(),
        name="instances-export",
    ),
]
