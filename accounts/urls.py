from django.urls import path

from . import views

urlpatterns = [
    path("2fa/verify/", views.two_factor_verify, name="two_factor_verify"),
    path("security/", views.security, name="security"),
    path("tokens/", views.tokens, name="tokens"),
    path("security/2fa/enable/", views.two_factor_enable, name="two_factor_enable"),
    path("security/2fa/disable/", views.two_factor_disable, name="two_factor_disable"),
    path("security/2fa/backup-codes/", views.backup_codes_regenerate, name="backup_codes_regenerate"),
]
