"""Django's stock middleware, run on the event loop instead of hopping to a thread.

Under ASGI, ``MiddlewareMixin`` runs every ``process_request``/``process_view``/
``process_response`` through ``sync_to_async(thread_sensitive=True)``: about ten thread
hops per request. Worse for streams, the first hop creates the request's own executor
thread, which lives as long as the request: an SSE stream open for an hour keeps an idle
OS thread for an hour (measured: 2,000 streams, 2,000 threads, 115 KB each).

The hooks of the middleware wrapped here do no I/O (headers, cookies, lazy objects,
URL resolving, reading a body Django has already received), so they run inline. The two
that sometimes write (a modified session, queued messages) hop to a thread only when they
have something to write. ``MIDDLEWARE`` in settings lists these in place of the originals.
"""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpResponseBadRequest, HttpResponseNotFound
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.deprecation import MiddlewareMixin
from servestatic.middleware import ServeStaticMiddleware
from servestatic.responders import MissingFileError


class InlineHooks:
    """Mixin for a ``MiddlewareMixin`` subclass: under ASGI, call its hooks inline.

    Only ``__acall__`` changes, so a synchronous stack (the test client, WSGI) runs the
    middleware exactly as Django does, and system checks still see the stock classes.
    """

    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = await self.aprocess_response(request, response)
        return response

    async def aprocess_response(self, request, response):
        return self.process_response(request, response)


class SecurityInlineMiddleware(InlineHooks, SecurityMiddleware):
    pass


class CommonInlineMiddleware(InlineHooks, CommonMiddleware):
    pass


class CsrfViewInlineMiddleware(InlineHooks, CsrfViewMiddleware):
    """CSRF checks inline: the token is in a cookie (``CSRF_USE_SESSIONS`` stays off)."""

    async def process_view(self, request, callback, callback_args, callback_kwargs):
        # Async, so the handler calls it without wrapping it in sync_to_async.
        return super().process_view(request, callback, callback_args, callback_kwargs)


class AuthenticationInlineMiddleware(InlineHooks, AuthenticationMiddleware):
    """``request.user`` and ``request.auser`` are lazy: setting them up does no query."""


class XFrameOptionsInlineMiddleware(InlineHooks, XFrameOptionsMiddleware):
    pass


class SessionInlineMiddleware(InlineHooks, SessionMiddleware):
    """The session is lazy; only saving a modified one needs the database (and a thread)."""

    async def aprocess_response(self, request, response):
        session = getattr(request, "session", None)
        if session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST):
            return await sync_to_async(self.process_response)(request, response)
        return self.process_response(request, response)


class MessageInlineMiddleware(InlineHooks, MessageMiddleware):
    """Messages are stored only when a view added or read some (their storage may be the
    session, which may need loading): then, and only then, hop to a thread."""

    async def aprocess_response(self, request, response):
        storage = getattr(request, "_messages", None)
        if storage is not None and (storage.used or storage.added_new):
            return await sync_to_async(self.process_response)(request, response)
        return self.process_response(request, response)


class StaticFilesMiddleware(ServeStaticMiddleware):
    """ServeStatic, with a static URL that names no file answered 404, never 500.

    With DEBUG on, ServeStatic raises ``MissingFileError`` for any ``/static/`` path it
    cannot find, as a hint to developers; Django turns it into a 500 with a traceback in
    the log, so ``/static/../streamsite/settings.py`` (or any typo) looked like a server
    failure under ``runserver``. The hint stays, as the 404's plain-text body.
    """

    async def __call__(self, request):
        try:
            return await super().__call__(request)
        except MissingFileError as missing:
            body = f"{missing}\n" if settings.DEBUG else "Not found.\n"
            return HttpResponseNotFound(body, content_type="text/plain; charset=utf-8")


class RequestLimitsInlineMiddleware(InlineHooks, MiddlewareMixin):
    """Answer 400 to parameters Django refuses to parse, before anything reads them.

    Past ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` parameters (or a form body past
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``), reading ``request.GET`` or ``request.POST`` raises a
    ``SuspiciousOperation``, which Django answers with a 400 but logs as an ERROR with a
    traceback, and with DEBUG on its technical error page reads the parameters again,
    fails the same way, and the client got a 500 (``runserver``). Parsing here first (the
    result is cached on the request) makes it a plain 400 with nothing but Django's
    one-line "Bad Request" warning. Only form bodies are parsed; JSON is the views'.
    """

    def process_request(self, request):
        try:
            request.GET  # noqa: B018 (parsed, and cached, for the check)
            if request.method == "POST" and request.content_type in FORM_CONTENT_TYPES:
                request.POST  # noqa: B018
        except (TooManyFieldsSent, TooManyFilesSent):
            return _bad_request("Too many parameters.")
        except RequestDataTooBig:
            return _bad_request("The request body is too large.")
        return None


#: Bodies Django parses into ``request.POST``.
FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _bad_request(reason: str) -> HttpResponseBadRequest:
    return HttpResponseBadRequest(f"{reason}\n", content_type="text/plain; charset=utf-8")
