"""HTTP endpoints of the notifications app: the SSE stream, the list page, mark-read, export."""

from django.contrib import messages
from django.contrib.auth import get_user
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from notifications import selectors, services
from notifications.events import session_digest
from notifications.exports import export_lines
from notifications.streams import notification_stream
from streamsite.http_chunks import ChunkWriter
from streamsite.observability.logs import logged_stream
from streamsite.params import parse_id
from streamsite.streaming.db import db_call

#: Notifications per page of the list.
LIST_PAGE_SIZE = 25


def parse_last_event_id(request) -> int | None:
    """Return where the client resumes: the ``Last-Event-ID`` header, else ``last_event_id``.

    The header wins: a browser reconnecting on its own sends the id of the last event it
    got, while the URL still carries the id its page was rendered with. Raises
    ``ValueError`` with a reason for anything but a non-negative integer.
    """
    raw = request.headers.get("Last-Event-ID")
    source = "Last-Event-ID"
    if not raw:
        raw = request.GET.get("last_event_id")
        source = "last_event_id"
    if raw is None or raw == "":
        return None
    try:
        return parse_id(raw)
    except ValueError:
        raise ValueError(f"{source} must be a non-negative integer event id.") from None


def plain_text(message: str, status: int) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


@require_GET
async def stream(request):
    """The logged-in user's notifications as Server-Sent Events (docs/protocol.md)."""
    # Not request.auser(): it would start the request's own executor thread, which would
    # then idle for as long as the stream is open (see streamsite.streaming.db).
    user = await db_call(get_user, request)
    if not user.is_authenticated:
        # Not a redirect to the login page: EventSource would follow it and retry forever.
        return plain_text("Log in to receive notifications.", 403)
    try:
        last_event_id = parse_last_event_id(request)
    except ValueError as error:
        return plain_text(str(error), 400)
    session_key = request.session.session_key  # loaded by get_user above
    stream = notification_stream(
        user.pk,
        last_event_id,
        session=session_digest(session_key) if session_key else None,
        # uvicorn's connection, written to directly while the stream waits (None elsewhere).
        writer=ChunkWriter.for_this_request(),
    )
    response = StreamingHttpResponse(
        logged_stream("notifications stream", stream, user_id=user.pk),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


@login_required
@require_GET
def notification_list(request):
    """All of the user's notifications, newest first, with mark-read forms."""
    paginator = Paginator(selectors.notifications_of(request.user.pk), LIST_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "notifications/list.html", {"page": page})


@login_required
@require_POST
def mark_read(request, notification_id: int):
    """Mark one of the user's notifications read (someone else's is left alone)."""
    changed = services.notification_mark_read(user=request.user, notification_id=notification_id)
    if wants_json(request):
        return JsonResponse(
            {
                "changed": int(changed),
                "ids": [notification_id],
                "up_to": None,
                "unread": selectors.unread_count(request.user.pk),
            }
        )
    if not changed:
        messages.info(request, "That notification was already read.")
    return redirect_back(request)


@login_required
@require_POST
def mark_all_read(request):
    """Mark all of the user's notifications read."""
    # The newest id before the write: the page marks everything up to it read. Anything
    # newer that the service also marked reaches the page as the stream's `read` event.
    up_to = selectors.latest_notification_id(request.user.pk)
    changed = services.notifications_mark_all_read(user=request.user)
    if wants_json(request):
        return JsonResponse(
            {
                "changed": changed,
                "ids": None,
                "up_to": up_to,
                "unread": selectors.unread_count(request.user.pk),
            }
        )
    messages.success(request, f"Marked {changed} notification{'s' if changed != 1 else ''} read.")
    return redirect_back(request)


def wants_json(request) -> bool:
    """Whether the caller is the page's script (fetch with ``Accept: application/json``).

    Browsers submitting the plain form ask for HTML, and get a redirect back.
    """
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def redirect_back(request):
    """Back to the list page (or the page given in ``next`` if it is on this site)."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("notifications:list")


@require_GET
async def export(request):
    """Every notification of the user as NDJSON, streamed: memory stays flat."""
    user = await request.auser()
    if not user.is_authenticated:
        return plain_text("Log in to export your notifications.", 403)
    response = StreamingHttpResponse(
        export_lines(user.pk), content_type="application/x-ndjson; charset=utf-8"
    )
    response["Content-Disposition"] = 'attachment; filename="notifications.ndjson"'
    response["Cache-Control"] = "no-store"
    return response
