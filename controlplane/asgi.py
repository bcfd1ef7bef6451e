"""ASGI entry point: HTTP goes to Django, but for the signature intake (``intake.asgi``); websockets to the
live-update consumers, after the origin check (the Origin header must name an allowed host) and the session auth
(the consumer decides who may listen)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

# Set up Django (apps, settings) before anything imports models.
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from controlplane.body_limit import BodyLimitMiddleware  # noqa: E402
from dashboard.live.routing import websocket_urlpatterns  # noqa: E402
from intake.asgi import IntakeEndpoint  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Bodies over their limit are refused before the intake or Django buffers them.
        "http": BodyLimitMiddleware(IntakeEndpoint(django_application)),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
