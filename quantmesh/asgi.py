import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantmesh.settings.base")

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from instances.proxy import InstanceRouter  # noqa: E402
from instances.routing import websocket_urlpatterns  # noqa: E402
from quantmesh.request_gate import RequestGate  # noqa: E402
from quantmesh.security import EmbeddedKeyLoopbackOnly  # noqa: E402

application = EmbeddedKeyLoopbackOnly(
    ProtocolTypeRouter(
        {
            # Only the portal's own requests queue at the gate: instance hosts' traffic is proxied to
            # engines on the event loop.
            "http": InstanceRouter(RequestGate(django_asgi_app)),
            # Session auth for the console; bearer tokens are checked by the consumer itself.
            "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
        }
    )
)
