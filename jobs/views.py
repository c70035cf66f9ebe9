"""Pages of the jobs app: the list with live bars, start an export, cancel, download."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from chat import permissions as chat_permissions
from chat import selectors as chat_selectors
from jobs import selectors, services, tasks
from jobs.events import job_payload
from jobs.models import Job


@login_required
@require_GET
def job_list(request):
    """The user's jobs, as they stand now; the page's script keeps the bars live."""
    services.jobs_fail_stale(owner_id=request.user.pk)
    jobs = list(selectors.jobs_of(request.user.pk)[: selectors.JOBS_LISTED])
    rows = [(job, job_payload(job)) for job in jobs]
    return render(request, "jobs/list.html", {"rows": rows})


def export_format(request) -> str:
    """The format the export form asked for (NDJSON unless it says CSV)."""
    asked = request.POST.get("format", "ndjson")
    return asked if asked in tasks.FORMATS else "ndjson"


@login_required
@require_POST
def notifications_export_start(request):
    """Start exporting the user's notifications to a file."""
    services.job_start(
        owner=request.user,
        kind=Job.Kind.NOTIFICATIONS_EXPORT,
        task=tasks.notifications_export,
        export_format=export_format(request),
    )
    messages.success(request, "Export started: you will be notified when it is ready.")
    return redirect("jobs:list")


@login_required
@require_POST
def room_export_start(request, slug: str):
    """Start exporting a room's history to a file: members (and staff) only, 404 for
    anyone else (a private room's name is not confirmed to outsiders)."""
    room = chat_selectors.room_by_slug(slug)
    if room is None or not chat_permissions.can_export(request.user, room):
        raise Http404("No such room.")
    services.job_start(
        owner=request.user,
        kind=Job.Kind.ROOM_EXPORT,
        task=tasks.room_export,
        label=f"#{room.slug}",
        room_id=room.pk,
        export_format=export_format(request),
    )
    messages.success(request, "Export started: you will be notified when it is ready.")
    return redirect("jobs:list")


@login_required
@require_POST
def job_cancel(request, job_id: int):
    """Cancel one of the user's unfinished jobs (anyone else's does not exist: 404)."""
    if selectors.job_of(request.user.pk, job_id) is None:
        raise Http404("No such job.")
    if services.job_cancel(user=request.user, job_id=job_id) is None:
        messages.info(request, "That job had already finished.")
    else:
        messages.success(request, "Job cancelled.")
    return redirect("jobs:list")


@login_required
@require_GET
def job_download(request, job_id: int):
    """The result file of one of the user's succeeded jobs; 404 for anything else."""
    job = selectors.job_of(request.user.pk, job_id)
    if job is None or job.state != Job.State.SUCCEEDED or not job.result:
        raise Http404("No such file.")
    if job.finished_at < selectors.job_expired_before():
        raise Http404("That file has expired.")
    try:
        handle = job.result.open("rb")
    except FileNotFoundError:
        raise Http404("That file has expired.") from None
    filename = job.result.name.rsplit("/", 1)[-1].split("-", 1)[-1]
    response = FileResponse(handle, as_attachment=True, filename=filename)
    response["Content-Type"] = "application/gzip"
    response["Cache-Control"] = "private, no-store"
    return response
