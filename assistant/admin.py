"""Admin for the assistant: conversations, answers and daily usage, to look at and to Stop.

Nothing here edits a conversation, a question or an answer: an answer's text and status are
written only by ``assistant.services`` as it streams, and there is no service (and no event)
for an edit or a deletion, so open pages would disagree with the database. The one write is
the answers list's "Stop selected answers" action, which goes through
``services.answer_stop``: the answer is cut and ended under its row lock and the stop is
published after commit, so open pages and the generating process see it like a user's Stop.

The tables grow without bound, so no list counts or sorts more than it must: each list is
ordered by an indexed key, skips the unfiltered total (``show_full_result_count``), reads
related rows in the same query, and offers only filters whose choices cost no scan.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from assistant import selectors, services
from assistant.models import Answer, Conversation, DailyUsage

#: Answers shown inline on a conversation's page (the newest); the rest are one link away.
INLINE_ANSWERS = 50
#: Recent answers whose model names make the answers list's "model" filter.
MODEL_FILTER_SAMPLE = 1000
#: Users listed on the usage summary, most tokens first.
SUMMARY_USERS = 100
#: The summary's windows: (query value, heading, days including today).
#: How long a text is shown in a list or inline column.
EXCERPT_LENGTH = 80


def excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT_LENGTH else text[: EXCERPT_LENGTH - 1] + "…"


class ViewOnly:
    """Rows staff may look at but not add, edit or delete here (see the module docstring)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ViewOnlyAdmin(ViewOnly, admin.ModelAdmin):
    show_full_result_count = False


# Conversations ----------------------------------------------------------------------------


class LatestAnswersFormSet(BaseInlineFormSet):
    """The conversation's newest ``INLINE_ANSWERS`` answers, not all of them.

    Django's inline formsets list every related row on purpose; a long conversation would
    make its page slow, and its answers are listed in full on the answers list.
    """

    def get_queryset(self):
        if not hasattr(self, "_latest"):
            self._latest = list(super().get_queryset().order_by("-id")[:INLINE_ANSWERS])
        return self._latest


class AnswerInline(ViewOnly, admin.TabularInline):
    """A conversation's answers, read-only: each links to its own page."""

    model = Answer
    formset = LatestAnswersFormSet
    fk_name = "conversation"
    verbose_name_plural = f"answers (the latest {INLINE_ANSWERS}, newest first)"
    fields = ("status", "asked", "answer_excerpt", "model", "tokens", "started_at")
    readonly_fields = fields
    show_change_link = True
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("question")

    @admin.display(description="question")
    def asked(self, obj: Answer) -> str:
        return excerpt(obj.question.text)

    @admin.display(description="answer")
    def answer_excerpt(self, obj: Answer) -> str:
        return excerpt(selectors.with_text_so_far([obj])[0].text)

    @admin.display(description="tokens")
    def tokens(self, obj: Answer) -> int | None:
        return obj.total_tokens


@admin.register(Conversation)
class ConversationAdmin(ViewOnlyAdmin):
    """Conversations with their answer count; answers read-only inline and one link away."""

    list_display = ("title", "owner", "created_at", "updated_at", "answer_count")
    list_select_related = ("owner",)
    list_filter = ("created_at", "updated_at")
    search_fields = ("title", "owner__username")
    # By id (the primary key's index): sorting the whole table by updated_at for every
    # page would read every row. The columns still sort on a click.
    ordering = ("-id",)
    fields = ("title", "owner", "created_at", "updated_at", "all_answers")
    readonly_fields = fields
    inlines = [AnswerInline]

    def get_queryset(self, request):
        # A correlated count per listed row (the answers' (conversation, id) index), not a
        # GROUP BY over every answer before the page is cut.
        answers = (
            Answer.objects.filter(conversation=OuterRef("pk"))
            .order_by()
            .values("conversation")
            .annotate(count=Count("pk"))
            .values("count")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(answer_count=Coalesce(Subquery(answers, output_field=IntegerField()), 0))
        )

    @admin.display(description="answers")
    def answer_count(self, obj: Conversation):
        return format_html(
            '<a href="{}?conversation__id__exact={}">{}</a>',
            reverse("admin:assistant_answer_changelist"),
            obj.pk,
            obj.answer_count,
        )

    @admin.display(description="all answers")
    def all_answers(self, obj: Conversation):
        return self.answer_count(obj)


# Answers ----------------------------------------------------------------------------------


class ModelFilter(admin.SimpleListFilter):
    """Filter by model, offering the models of the latest answers.

    Django's filter on a plain field offers every distinct value, which reads the whole
    table on every page; the newest ``MODEL_FILTER_SAMPLE`` answers are read by the primary
    key's index and name the models in use.
    """

    title = "model"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        recent = Answer.objects.order_by("-id").values_list("model", flat=True)
        names = set(recent[:MODEL_FILTER_SAMPLE]) - {""}
        if self.value():
            names.add(self.value())  # keep a chosen model offered once it is not recent
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(model=self.value())
        return queryset


@admin.register(Answer)
class AnswerAdmin(ViewOnlyAdmin):
    """Answers, read-only; streaming ones can be stopped through the service."""

    list_display = (
        "id", "conversation", "owner", "status", "model", "tokens", "usage_estimated",
        "first_token_ms", "started_at", "finished_at", "duration",
    )  # fmt: skip
    list_select_related = ("conversation", "owner")
    list_filter = ("status", ModelFilter, "usage_estimated", "started_at")
    search_fields = ("owner__username", "question__text")
    ordering = ("-id",)
    fields = (
        "conversation", "question_text", "owner", "continues", "status", "text", "position",
        "model", "finish_reason", "error", "prompt_tokens", "completion_tokens", "tokens",
        "usage_estimated", "first_token_ms", "started_at", "finished_at", "duration", "alive_at",
    )  # fmt: skip
    readonly_fields = fields
    actions = ["stop_answers"]

    def get_object(self, request, object_id, from_field=None):
        """The answer with its whole text so far, even while it streams (never saved)."""
        answer = super().get_object(request, object_id, from_field)
        return selectors.with_text_so_far([answer])[0] if answer is not None else None

    @admin.display(description="question")
    def question_text(self, obj: Answer) -> str:
        return obj.question.text

    @admin.display(description="total tokens")
    def tokens(self, obj: Answer) -> int | None:
        return obj.total_tokens

    @admin.display(description="duration")
    def duration(self, obj: Answer) -> str | None:
        if obj.finished_at is None:
            return None
        return f"{(obj.finished_at - obj.started_at).total_seconds():.1f} s"

    def has_stop_permission(self, request) -> bool:
        # Stopping changes an answer: staff who may only view answers may not.
        return request.user.has_perm("assistant.change_answer")

    @admin.action(description="Stop selected answers", permissions=["stop"])
    def stop_answers(self, request, queryset):
        """Stop the selected answers that are streaming, one service call (and lock) each."""
        selected = queryset.count()
        stopped = 0
        streaming = queryset.filter(status=Answer.Status.STREAMING).values_list("pk", flat=True)
        for answer_id in list(streaming):
            try:
                # No position: keep all the text stored so far (no page asked for a cut).
                answer = services.answer_stop(user=request.user, answer_id=answer_id, position=None)
            except Answer.DoesNotExist:  # deleted with its conversation meanwhile
                continue
            # It may have finished on its own between the list and the lock.
            if answer.status == Answer.Status.STOPPED:
                stopped += 1
        if stopped:
            self.message_user(
                request, f"Stopped {stopped} answer{'' if stopped == 1 else 's'}.", messages.SUCCESS
            )
        if finished := selected - stopped:
            self.message_user(
                request,
                f"{finished} answer{' was' if finished == 1 else 's were'} already finished.",
                messages.WARNING if not stopped else messages.INFO,
            )


# Daily usage ------------------------------------------------------------------------------


@admin.register(DailyUsage)
class DailyUsageAdmin(ViewOnlyAdmin):
    """Each user's tokens per UTC day, and a summary of the heaviest users (linked above it)."""

    list_display = ("user", "day", "tokens", "answers")
    list_select_related = ("user",)
    list_filter = ("day",)
    search_fields = ("user__username",)
    # Rows are created as days go by, so the id is in day order, and has an index.
    ordering = ("-id",)

    def get_urls(self):
        summary = path(
            "summary/",
            self.admin_site.admin_view(self.summary_view),
            name="assistant_dailyusage_summary",
        )
        return [summary, *super().get_urls()]

    def summary_view(self, request):
        """Per user: tokens and answers today, in the last 7 and 30 days (top users)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        windows = [name for name, _, _ in selectors.SUMMARY_WINDOWS]
        order = request.GET.get("order")
        if order not in windows:
            order = "month"
        today = timezone.now().date()
        rows = selectors.usage_by_user(today=today, order=order, limit=SUMMARY_USERS)
        context = {
            **self.admin_site.each_context(request),
            "title": "Usage by user",
            "opts": self.model._meta,
            "today": today,
            "order": order,
            "windows": selectors.SUMMARY_WINDOWS,
            "rows": [
                {
                    "user_id": row["user_id"],
                    "username": row["user__username"],
                    "figures": [(row[f"tokens_{w}"], row[f"answers_{w}"]) for w in windows],
                }
                for row in rows
            ],
            "limit": SUMMARY_USERS,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/assistant/dailyusage/summary.html", context)
