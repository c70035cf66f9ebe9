"""The ASGI entry point: HTTP (pages, SSE streams) to Django, WebSockets to Channels.

Served by daphne under ``manage.py runserver`` in development and by uvicorn in production
(``make serve``).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "streamsite.settings")

# Django must be set up before anything imports models (consumers, routing, auth).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from streamsite.lifespan import lifespan_app  # noqa: E402
from streamsite.observability.logs import RequestIdMiddleware, WebSocketUserMiddleware  # noqa: E402
from streamsite.routing import websocket_urlpatterns  # noqa: E402
from streamsite.server_logs import install_server_log_filters  # noqa: E402
from streamsite.server_send import ServerSendMiddleware  # noqa: E402
from streamsite.socket_auth import SocketAuthMiddleware  # noqa: E402

# uvicorn logs a traceback per invalid UTF-8 frame a client sends (one line instead) and
# lines per socket that the application's own connection lines already say (dropped).
install_server_log_filters()

# The server's own ``send`` in every scope, for streams' and sockets' direct writes
# (streamsite/server_send.py); a request id per request and socket, for logs and the
# X-Request-ID response header.
application = ServerSendMiddleware(
    RequestIdMiddleware(
        ProtocolTypeRouter(
            {
                "http": django_asgi_app,
                # The Origin check comes first, so a foreign page is refused before any session
                # lookup: browsers send cookies with cross-site WebSocket handshakes. Sessions
                # and users of handshakes arriving together are read together
                # (streamsite/socket_auth.py).
                "websocket": AllowedHostsOriginValidator(
                    SocketAuthMiddleware(WebSocketUserMiddleware(URLRouter(websocket_urlpatterns)))
                ),
                # uvicorn's graceful shutdown: apps' last words (streamsite/lifespan.py).
                "lifespan": lifespan_app,
            }
        )
    )
)
