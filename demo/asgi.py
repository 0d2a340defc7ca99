"""The ASGI application: Django's, plus the lifespan protocol to close vinyl's pools at shutdown."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()


async def application(scope, receive, send):
    if scope["type"] != "lifespan":
        return await django_application(scope, receive, send)
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            from demo import workers
            from demo.food.services import KITCHEN_NOTIFIED

            workers.publish(KITCHEN_NOTIFIED)  # this worker is up (see /stats)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            import vinyl

            await vinyl.close_pools()
            await send({"type": "lifespan.shutdown.complete"})
            return
