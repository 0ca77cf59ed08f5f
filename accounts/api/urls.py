from django.urls import path

from .views import LoginApi, LogoutApi, TokenDetailApi, TokenListCreateApi

urlpatterns = [
    path("login", LoginApi.as_view(), name="auth-login"),
    path("logout", LogoutApi.as_view(), name="auth-logout"),
    path("tokens", TokenListCreateApi.as_view(), name="auth-tokens"),
    path("tokens/<int:token_id>", TokenDetailApi.as_view(), name="auth-token-detail"),
]
