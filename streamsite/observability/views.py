"""The admin's Live page and its SSE stream (staff only)."""

from django.contrib import admin
from django.contrib.auth import get_user
from django.http import HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from streamsite.observability.dashboard import dashboard_stream
from streamsite.streaming.db import db_call


@require_GET
def live_page(request):
    """The figures of every process, live, and charts of the last 10 minutes."""
    context = {**admin.site.each_context(request), "title": "Live"}
    return TemplateResponse(request, "admin/live.html", context)


# The admin's own login redirect for the page (wrapped in urls.py by admin_view).
live_page = admin.site.admin_view(live_page)


@require_GET
async def live_stream(request):
    """``event: sample`` once a second (streamsite.observability.dashboard)."""
    # Not request.auser(): it would start the request's own executor thread, which would
    # then idle for as long as the stream is open (see streamsite.streaming.db).
    user = await db_call(get_user, request)
    if not (user.is_active and user.is_staff):
        # Not a redirect to the login page: EventSource would follow it and retry forever.
        return HttpResponse("Staff only.\n", status=403, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(
        dashboard_stream(), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response
