"""HTTP endpoints of the chat app: the room list, a room, the no-JavaScript forms, export.

The live part (the socket) is the consumer's; these pages work without JavaScript and mark
where the browser client hooks in (``<div id="chat">`` in templates/chat/room.html).
"""

import uuid

from django.contrib import messages
from django.contrib.auth import get_user, get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import permissions, room_assistant, selectors, services
from chat.conf import max_message_length
from chat.exports import export_lines
from chat.forms import MemberAddForm, MessageForm, RoomCreateForm
from chat.models import Membership, Message, Room
from chat.timeline import mark_timeline
from streamsite.params import parse_id
from streamsite.streaming.db import db_call

#: Members listed on a room's page (a big public room says how many more there are).
MEMBERS_SHOWN = 100


def room_url(room: Room, message_id: int | None = None) -> str:
    url = reverse("chat:room", kwargs={"slug": room.slug})
    return f"{url}#message-{message_id}" if message_id else url


@login_required
@require_http_methods(["GET", "POST"])
def room_list(request):
    """The rooms the user can see, with unread counts, and a form to create one."""
    form = RoomCreateForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        try:
            room = services.room_create(creator=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Created #{room.slug}.")
            return redirect(room_url(room))
    rooms = selectors.rooms_for(request.user)
    return render(request, "chat/index.html", {"rooms": rooms, "form": form})


@login_required
@require_GET
def room_detail(request, slug: str):
    """A room: the latest messages (or those before ``?before=<id>``), oldest first."""
    room = get_object_or_404(Room, slug=slug)
    membership = permissions.membership_of(request.user, room)
    if not permissions.can_read(request.user, room, membership):
        raise PermissionDenied("This room is private.")
    before = request.GET.get("before")
    if before is not None:
        try:
            before = parse_id(before)
        except ValueError:
            return HttpResponseBadRequest("before must be a message id.")
    form = MessageForm(initial={"client_id": uuid.uuid4()})
    return render_room(request, room, membership, form, before=before)


def render_room(request, room: Room, membership, form: MessageForm, *, before=None, status=200):
    user = request.user
    history, has_more = selectors.room_history(room, before=before)
    if before is None and membership is not None and history:
        # Showing the latest messages to a member is reading them.
        services.membership_mark_read(user=user, room=room, up_to=history[-1].pk)
    mark_timeline(history)
    can_moderate = permissions.can_moderate(user, room, membership)
    members, member_count = selectors.members_of(room, limit=MEMBERS_SHOWN)
    context = {
        "room": room,
        "membership": membership,
        "chat_messages": history,
        "has_more": has_more,
        "older_url": f"{room_url(room)}?before={history[0].pk}" if has_more else "",
        "newer": before is not None,
        "last_id": history[-1].pk if history else 0,
        "form": form,
        "can_post": permissions.can_post(user, room, membership),
        "can_moderate": can_moderate,
        "can_export": permissions.can_export(user, room, membership),
        "members": members,
        "more_members": member_count - len(members),
        "member_form": MemberAddForm() if can_moderate else None,
        "max_length": max_message_length(),
        "ws_path": f"/ws/chat/{room.slug}/",
        # The sidebar: every room the user can see, with unread counts (read after this
        # room was marked read, so it shows none here).
        "rooms": selectors.rooms_for(user),
    }
    return render(request, "chat/room.html", context, status=status)


@login_required
@require_POST
def message_create(request, slug: str):
    """Send a message from the plain form, then go back to the room (no JavaScript needed)."""
    room = get_object_or_404(Room, slug=slug)
    membership = permissions.membership_of(request.user, room)
    if not permissions.can_post(request.user, room, membership):
        raise PermissionDenied("You cannot post in this room.")
    form = MessageForm(request.POST)
    form.is_valid()  # every field is optional: this only fills cleaned_data
    client_id = _client_id(form.cleaned_data.get("client_id"))
    try:
        message, _created = services.message_post(
            user=request.user, room=room, client_id=client_id, body=form.cleaned_data["body"]
        )
    except ValidationError as error:
        form.add_error("body", error)
        return render_room(request, room, membership, form, status=400)
    if message.assistant_unavailable:
        messages.warning(request, message.assistant_unavailable)
    return redirect(room_url(room, message.pk))


def _client_id(raw: str | None) -> uuid.UUID:
    """The form's client_id, or a new one when it is missing or not a UUID."""
    try:
        return uuid.UUID(raw or "")
    except ValueError:
        return uuid.uuid4()


@login_required
@require_POST
def message_delete(request, slug: str, message_id: int):
    """Delete a message (moderators and staff); it disappears live from every client."""
    room = get_object_or_404(Room, slug=slug)
    message = get_object_or_404(Message, pk=message_id, room=room)
    message.room = room
    services.message_delete(user=request.user, message=message)  # PermissionDenied: 403
    messages.success(request, "Message deleted.")
    return redirect(room_url(room, message.pk))


@login_required
@require_POST
def answer_stop(request, slug: str, message_id: int):
    """Stop the assistant's answer in a message (who asked, moderators, staff), no JavaScript."""
    room = get_object_or_404(Room, slug=slug)
    if not permissions.can_read(request.user, room):
        raise PermissionDenied("This room is private.")
    try:
        room_assistant.message_answer_stop_by_id(
            user=request.user, room=room, message_id=message_id
        )  # PermissionDenied: 403
    except Message.DoesNotExist:
        raise Http404("No answer of the assistant to stop here.") from None
    messages.success(request, "The assistant's answer is stopped.")
    return redirect(room_url(room, message_id))


@login_required
@require_POST
def room_assistant_set(request, slug: str):
    """Moderators turn the assistant on or off in their room (``enabled``: "1" or "0")."""
    room = get_object_or_404(Room, slug=slug)
    enabled = request.POST.get("enabled") == "1"
    room_assistant.room_assistant_set(user=request.user, room=room, enabled=enabled)
    if enabled:
        messages.success(request, "The assistant is in this room: mention @assistant to ask it.")
    else:
        messages.success(request, "The assistant has left this room.")
    return redirect(room_url(room))


@login_required
@require_POST
def member_add(request, slug: str):
    """A moderator adds a user to the room by username."""
    room = get_object_or_404(Room, slug=slug)
    if not permissions.can_moderate(request.user, room):
        raise PermissionDenied("Only the room's moderators can add members.")
    form = MemberAddForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the username of the user to add.")
        return redirect(room_url(room))
    username = form.cleaned_data["username"].strip()
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        messages.error(request, f"There is no user “{username}”.")
    else:
        _membership, created = services.membership_add(room=room, user=user)
        if created:
            messages.success(request, f"Added {username} to #{room.slug}.")
        else:
            messages.info(request, f"{username} is already a member.")
    return redirect(room_url(room))


@login_required
@require_POST
def member_remove(request, slug: str, user_id: int):
    """A moderator removes a member, or a member leaves; their open sockets stop at once."""
    room = get_object_or_404(Room, slug=slug)
    leaving = user_id == request.user.pk
    if not leaving and not permissions.can_moderate(request.user, room):
        raise PermissionDenied("Only the room's moderators can remove members.")
    membership = get_object_or_404(
        Membership.objects.select_related("user"), room=room, user_id=user_id
    )
    services.membership_remove(room=room, user=membership.user)
    if leaving:
        messages.success(request, f"You left #{room.slug}.")
        return redirect("chat:index")
    messages.success(request, f"Removed {membership.user.get_username()} from #{room.slug}.")
    return redirect(room_url(room))


def plain_text(message: str, status: int) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


@require_GET
async def export(request, slug: str):
    """The room's whole history as NDJSON, streamed: members (and staff) only."""
    # Not request.auser(): it would start the request's own executor thread, which would
    # then idle for as long as the download runs (see streamsite.streaming.db).
    user = await db_call(get_user, request)
    if not user.is_authenticated:
        return plain_text("Log in to export a room.", 403)
    room = await db_call(selectors.room_by_slug, slug)
    if room is None:
        return plain_text("No such room.", 404)
    if not await db_call(permissions.can_export, user, room):
        return plain_text("Only the room's members can export it.", 403)
    response = StreamingHttpResponse(
        export_lines(room), content_type="application/x-ndjson; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="chat-{room.slug}.ndjson"'
    response["Cache-Control"] = "no-store"
    return response
