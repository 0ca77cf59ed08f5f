"""Django's ASGI handler with the middleware chain and the view run as one synchronous call.

Why: every view and most middleware here are synchronous. Django's async chain hops from the event
loop to a thread for the chain, back to the loop for the inner handler, and to a thread again for
the view, on every request; here the chain and the view run in one thread hop. Streaming answers
with an async body (a lifecycle call's settling wait) are still sent from the event loop, holding
no thread while they wait.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        self.load_middleware(is_async=False)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
