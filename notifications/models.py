from django.conf import settings
from django.core.validators import MaxLengthValidator, ProhibitNullCharactersValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from notifications.validators import safe_link, validate_notification_url


class Notification(models.Model):
    """Something a user should know, stored first and then pushed to their open pages.

    The primary key is the Server-Sent Events id: a client that saw id N resumes with
    "everything after N", so ids are the catch-up cursor.
    """

    class Level(models.TextChoices):
        INFO = "info", "Info"
        SUCCESS = "success", "Success"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    # Empty: an announcement to every user, stored once and fanned out when read (each
    # user's read state lives in AnnouncementRead and their counter's watermark).
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notifications",
        null=True,
        blank=True,
        # No index of its own: ``notification_recipient_id`` (recipient, id) serves every
        # lookup by recipient (the feed, a user's deletion), and one more index was one
        # more random write per row of a broadcast into a long history.
        db_index=False,
        help_text="Leave empty to announce it to every user (stored once).",
    )
    # No NUL: PostgreSQL text cannot hold it (the insert would fail with a 500).
    title = models.CharField(max_length=200, validators=[ProhibitNullCharactersValidator()])
    # A TextField's max_length only sizes form widgets: the validator enforces it.
    body = models.TextField(
        blank=True,
        max_length=5000,
        validators=[ProhibitNullCharactersValidator(), MaxLengthValidator(5000)],
    )
    url = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_notification_url],
        help_text="Optional link: a path on this site (/chat/lobby/) or an http(s) URL.",
    )
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.INFO)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Resume and list: a user's notifications by id.
            models.Index(fields=["recipient", "id"], name="notification_recipient_id"),
            # No index on unread rows: the badge reads a counter (UnreadCounter), and every
            # index is one more random write per row of a broadcast into a long history.
            # Announcements by id: a stream's replay and a user's unread announcements.
            models.Index(
                fields=["id"],
                condition=Q(recipient__isnull=True),
                name="notification_announcement",
            ),
        ]

    def __str__(self):
        return f"{self.title} → {self.recipient_id or 'everyone'}"

    @property
    def is_announcement(self) -> bool:
        return self.recipient_id is None

    @property
    def is_read(self) -> bool:
        """Read by the user it was loaded for: an announcement's read state is per user,
        set by the selectors that load it (``user_read``); a notification's is its own."""
        user_read = self.__dict__.get("user_read")
        if user_read is not None:
            return bool(user_read)
        return self.read_at is not None

    @property
    def link(self) -> str:
        """``url`` if it is safe to link to, else ``""`` (``validators.safe_link``): what
        pages and events use, so a row written around validation never links a script."""
        return safe_link(self.url)

    def as_event(self) -> dict:
        """The JSON-safe payload clients receive (SSE ``data``)."""
        return {
            "id": self.pk,
            "title": self.title,
            "body": self.body,
            "url": self.link,
            "level": self.level,
            "created_at": self.created_at.isoformat(),
            "read": self.is_read,
        }


class UnreadCounter(models.Model):
    """How many unread notifications a user has, maintained by ``notifications.counters``.

    Changed in the same transaction as the notifications it counts, so every event can
    carry the count without counting rows (see ``notifications/counters.py``).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    #: The user's unread notifications of their own (announcements are counted apart).
    unread = models.IntegerField(default=0)
    #: Every announcement with an id up to this is read for the user ("mark all read", and
    #: those published before the user existed).
    announcements_read_up_to = models.BigIntegerField(default=0)
    #: The id drawn for the user's newest notification of their own, and the one drawn
    #: before it (``notifications.counters.counters_increment_drawing_ids``, PostgreSQL):
    #: a new notification's ``previous`` without reading the feed. Null: not known (the
    #: feed is read instead). Both only ever grow: a deleted notification's id stays here.
    newest_id = models.BigIntegerField(null=True, blank=True)
    previous_id = models.BigIntegerField(null=True, blank=True)

    def __str__(self):
        return f"{self.user_id}: {self.unread} unread"


class AnnouncementRead(models.Model):
    """One user read one announcement (above their counter's watermark)."""

    # No index of its own: the unique (user, notification) starts with it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="+")
    read_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "notification"], name="announcement_read_once")
        ]

    def __str__(self):
        return f"{self.user_id} read {self.notification_id}"
