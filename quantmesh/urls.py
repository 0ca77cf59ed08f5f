from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django_otp.admin import OTPAdminSite
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts import views as account_views
from accounts.forms import ThrottledAdminAuthenticationForm
from alerts import views as alert_views
from backups import views as backup_views
from billing import views as billing_views
from billing import webhooks as billing_webhooks
from instances import views as instance_views
from instances.proxy import forward_auth
from instances.traefik import provider as traefik_provider
from quantmesh.api.errors import json_or_html
from quantmesh.api.me import MeApi
from quantmesh.outages import server_error_or_outage
from strategies import views as strategy_views

from . import grafana, metrics, views

# Staff reach the admin only with a verified second factor, through the throttled login form.
admin.site.__class__ = OTPAdminSite
admin.site.login_form = ThrottledAdminAuthenticationForm
admin.site.site_header = "QuantMesh Cloud support"
admin.site.site_title = "QuantMesh Cloud support"

api_urlpatterns = [
    path("auth/me", MeApi.as_view(), name="auth-me"),
    path("auth/", include("accounts.api.urls")),
    path("billing/", include("billing.api.urls")),
    path("saas/", include("instances.api.urls")),
    path("saas/", include("backups.api.urls")),
    path("saas/", include("alerts.api.urls")),
    path("saas/", include("strategies.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("internal/prometheus/targets", metrics.targets_view, name="prometheus_targets"),
    path("internal/engine-metrics/<str:instance_id>", metrics.engine_metrics_view, name="engine_metrics"),
    path("api/", include(api_urlpatterns)),
    path("instances/new", instance_views.instance_create, name="instance_create"),
    path("instances/host/<slug:slug>/open", instance_views.instance_open_by_host, name="instance_open_by_host"),
    path("support", views.support, name="support"),
    path("instances/<str:instance_id>", instance_views.instance_detail, name="instance_detail"),
    path("instances/<str:instance_id>/open", instance_views.instance_open, name="instance_open"),
    path("instances/<str:instance_id>/backups", backup_views.instance_backups, name="instance_backups"),
    path("instances/<str:instance_id>/domains", instance_views.instance_domains, name="instance_domains"),
    path("instances/<str:instance_id>/migrate", instance_views.instance_migrate, name="instance_migrate"),
    path("instances/<str:instance_id>/strategy", strategy_views.instance_strategy, name="instance_strategy"),
    path("instances/<str:instance_id>/<str:action>", instance_views.instance_action, name="instance_action"),
    path("__quantmesh/login", instance_views.instance_ticket_login, name="instance_ticket_login"),
    path("internal/forward-auth", forward_auth, name="instance_forward_auth"),
    path("internal/grafana-auth", grafana.grafana_auth_view, name="grafana_auth"),
    re_path(
        r"^internal/prometheus-tenant/api/v1/(?P<api_path>[a-z_]+(?:/[A-Za-z0-9_.:-]+/values)?)$",
        grafana.tenant_prometheus_view,
        name="prometheus_tenant",
    ),
    path("internal/traefik/dynamic", traefik_provider, name="traefik_provider"),
    path("settings/notifications", alert_views.notification_settings, name="notification_settings"),
    path("billing/", billing_views.billing, name="billing"),
    path("billing/portal", billing_views.billing_portal, name="billing_portal"),
    path("r/<str:code>", billing_views.referral_landing, name="referral"),
    # Stripe's webhooks: dj-stripe verifies the signature and records each event once (billing's
    # subclass answers 200 to events about customers Stripe does not know).
    path("stripe/webhook/<uuid:uuid>/", billing_webhooks.WebhookView.as_view()),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    path("accounts/", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path("i18n/setlang/", account_views.language_switch, name="set_language"),
    path(settings.QM_ADMIN_PATH, admin.site.urls),
]

handler404 = json_or_html(404, "not_found", "No such resource.", views.page_not_found)
handler500 = server_error_or_outage(
    json_or_html(500, "server_error", "An internal error occurred; it has been logged.", views.server_error)
)
