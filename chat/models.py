"""Rooms, who belongs to them, and what was said in them.

Message ids are the chat's cursor: a client that saw message N of a room resumes with
"everything after N", and a member's ``last_read_message_id`` is the same kind of cursor.
"""

from django.conf import settings
from django.core.validators import ProhibitNullCharactersValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from chat.validators import validate_message_length


class Room(models.Model):
    """A place to talk. Public rooms are open to every user; private ones to members."""

    # The slug is for URLs only: channel-layer groups use the id (chat.events.room_key).
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100, validators=[ProhibitNullCharactersValidator()])
    is_private = models.BooleanField(
        "private",
        default=False,
        help_text="Private rooms are seen and joined by their members (and staff) only.",
    )
    assistant_enabled = models.BooleanField(
        "assistant",
        default=False,
        help_text="The assistant answers messages that mention @assistant, for every member "
        "to see.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    """A user's place in a room: their role and how far they have read."""

    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        MODERATOR = "moderator", "Moderator"

    # No index of its own: the unique (room, user) starts with it.
    room = models.ForeignKey(
        Room, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    # The id of the last message the member has seen; null: nothing read yet.
    last_read_message_id = models.PositiveBigIntegerField(null=True, blank=True)
    joined_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["room_id", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="chat_membership_room_user"),
        ]

    def __str__(self):
        return f"{self.user_id} in {self.room_id} ({self.role})"

    @property
    def is_moderator(self) -> bool:
        return self.role == self.Role.MODERATOR


class Message(models.Model):
    """One message in a room. Deleting it keeps the row (ids stay continuous) but not the text.

    ``client_id`` is the sender's idempotency key: a client retrying a send after a flaky
    network reuses it, and the unique constraint makes the retry store nothing.

    A message can be the assistant's answer to a question asked in the room
    (``assistant_answer_id``): its author is who asked, its ``body`` stays empty, and its
    text, status and position live in the assistant's answer, which streams into it.
    """

    # No index of its own: ``chat_message_room_id`` (room, id) serves every lookup by room.
    room = models.ForeignKey(
        Room, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_messages"
    )
    # Empty only once deleted or for an assistant's answer (see the constraint);
    # chat.services.message_post refuses blanks.
    body = models.TextField(
        blank=True, validators=[validate_message_length, ProhibitNullCharactersValidator()]
    )
    client_id = models.UUIDField("client id")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # The assistant's answer shown by this message (its id in the assistant app; no foreign
    # key: the apps meet only through services and selectors). Null for people's messages.
    assistant_answer_id = models.PositiveBigIntegerField(null=True, blank=True)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The moderator who deleted the message.",
    )

    class Meta:
        ordering = ["id"]
        indexes = [
            # History, resume, unread counts and export: a room's messages by id.
            models.Index(fields=["room", "id"], name="chat_message_room_id"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["room", "author", "client_id"], name="chat_message_client_id"
            ),
            # A deleted message keeps no text, and a live one always has some (a person's in
            # its body, an answer's in the assistant's answer): the body of a deleted message
            # cannot leak through a read path that forgets to check.
            models.CheckConstraint(
                condition=(
                    Q(deleted_at__isnull=True, assistant_answer_id__isnull=True) & ~Q(body="")
                )
                | Q(deleted_at__isnull=True, assistant_answer_id__isnull=False, body="")
                | Q(deleted_at__isnull=False, body=""),
                name="chat_message_body_only_while_not_deleted",
            ),
        ]

    def __str__(self):
        return f"message {self.pk} in room {self.room_id}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def is_assistant_answer(self) -> bool:
        return self.assistant_answer_id is not None
