from django.urls import path

from .consumers import LogStreamConsumer

websocket_urlpatterns = [
    path("api/saas/instances/<str:instance_id>/logs/stream", LogStreamConsumer.as_asgi()),
]
