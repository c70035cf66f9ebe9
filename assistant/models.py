"""Conversations with the assistant: questions, and answers persisted as they stream.

An answer's ``position`` is the length of its stored text in characters (code points): a
client that has shown an answer up to position N resumes with "after N" and gets exactly the
rest, with no row per token. Text reaches the database in coalesced flushes, each committed
before it is published, so no client ever receives text the database does not hold.
"""

from django.conf import settings
from django.core.validators import ProhibitNullCharactersValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Conversation(models.Model):
    """A user's thread with the assistant. Its row is the lock that orders its answers.

    A chat room that has the assistant as a participant has one conversation too, with no
    owner (``room_id`` says which room; each answer's ``owner`` is who asked): its answers
    get the same limits, usage, Stop, crash handling and admin as everyone's.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="assistant_conversations",
        db_index=False,
        null=True,
        blank=True,
    )
    # The chat room whose conversation this is (an id the chat app gives; no foreign key:
    # the apps meet only through services).
    room_id = models.PositiveBigIntegerField(null=True, blank=True, unique=True)
    title = models.CharField(max_length=200, validators=[ProhibitNullCharactersValidator()])
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-updated_at"], name="assistant_conversation_owner"),
        ]

    def __str__(self):
        return self.title


class Question(models.Model):
    """What the user asked. ``client_id`` makes a retried POST store nothing twice."""

    # No index of its own: the unique (conversation, client_id) starts with it.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="questions", db_index=False
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assistant_questions"
    )
    text = models.TextField(validators=[ProhibitNullCharactersValidator()])
    client_id = models.UUIDField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # For a question asked in a chat room: the chat message that asked. Deleting that
    # message erases this text too (``services.question_erase``).
    room_message_id = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"], name="assistant_question_client_id"
            ),
        ]
        indexes = [
            models.Index(
                fields=["room_message_id"],
                name="assistant_question_room_msg",
                condition=Q(room_message_id__isnull=False),
            ),
        ]

    def __str__(self):
        return self.text[:60]


class Answer(models.Model):
    """One answer to a question (a retry or a continuation is another answer).

    Answers of a conversation are created under a lock on the conversation's row, so their
    ids are in commit order: a stream resuming "after answer N" cannot skip one.
    """

    class Status(models.TextChoices):
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        STOPPED = "stopped", "Stopped"
        INTERRUPTED = "interrupted", "Interrupted"
        FAILED = "failed", "Failed"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="answers", db_index=False
    )
    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="answers")
    # Who asked, and whose limits and budget it counts against.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="assistant_answers",
        db_index=False,
    )
    # An answer that goes on from an interrupted or stopped one ("continue").
    continues = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="continuations"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.STREAMING)
    # For an answer given in a chat room: the room's hub key and the chat message that
    # shows it, where its deltas and end are published too (``events.Route``).
    room_key = models.CharField(max_length=100, blank=True)
    room_message_id = models.PositiveBigIntegerField(null=True, blank=True)
    # The whole text once the answer has ended. While it streams, the text appended since it
    # started is kept apart in its ``parts`` (``AnswerPart``): read it with
    # ``selectors.with_text_so_far``.
    text = models.TextField(blank=True, default="")
    # The length of the whole text so far in code points: the position clients resume from.
    position = models.PositiveIntegerField(default=0)
    model = models.CharField(max_length=200, blank=True)
    finish_reason = models.CharField(max_length=40, blank=True)
    # Why it failed or was interrupted, short and safe to show.
    error = models.CharField(max_length=300, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_estimated = models.BooleanField(default=False)
    first_token_ms = models.PositiveIntegerField("time to first token (ms)", null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The liveness mark: renewed by the process generating the answer. One not renewed for
    # ASSISTANT_INTERRUPTED_AFTER_SECONDS is interrupted by whichever process notices.
    alive_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["conversation", "id"], name="assistant_answer_conversation"),
            models.Index(fields=["owner", "id"], name="assistant_answer_owner"),
            # The sweep for crashed generations and the per-user running count read only
            # the few answers streaming now, whatever the history.
            models.Index(
                fields=["alive_at"],
                name="assistant_answer_streaming",
                condition=Q(status="streaming"),
            ),
        ]

    def __str__(self):
        return f"answer {self.pk} ({self.status})"

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


class AnswerPart(models.Model):
    """Text appended to a streaming answer, a row per flush until the answer ends.

    Appending to the answer's own text would rewrite all of it on every flush: PostgreSQL
    stores a new copy of the whole (compressed, out-of-line) value with each UPDATE, so an
    answer's cost grew with the square of its length (measured: one flush of 200 answers of
    50 KB each, 340 ms; of short ones, under 1 ms). A part costs the same at any length;
    when the answer ends, its parts are folded into its text in one write
    (``services``) and deleted.
    """

    answer = models.ForeignKey(
        Answer, on_delete=models.CASCADE, related_name="parts", db_index=False
    )
    # Where the part starts in the answer's text, in code points.
    start = models.PositiveIntegerField()
    text = models.TextField()

    class Meta:
        constraints = [
            # Also the index that reads an answer's parts in order.
            models.UniqueConstraint(fields=["answer", "start"], name="assistant_part_answer_start"),
        ]

    def __str__(self):
        return f"answer {self.answer_id} at {self.start}"


class DailyUsage(models.Model):
    """Tokens a user spent on one UTC day; its row is also the user's lock for new answers."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="assistant_usage",
        db_index=False,
    )
    day = models.DateField()
    tokens = models.PositiveBigIntegerField(default=0)
    answers = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-day", "user_id"]
        verbose_name_plural = "daily usage"
        # The usage summary reads a window of days across every user.
        indexes = [models.Index(fields=["day"], name="assistant_usage_day")]
        constraints = [
            models.UniqueConstraint(fields=["user", "day"], name="assistant_usage_user_day"),
        ]

    def __str__(self):
        return f"{self.user_id} on {self.day}: {self.tokens} tokens"
