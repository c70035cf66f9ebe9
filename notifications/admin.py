"""Admin for notifications, and a "send notification" action on the user list.

Everything that creates, deletes or marks a notification read goes through
``notifications.services``, so what staff do in the admin reaches open pages live, after
the admin's transaction commits, exactly like any other notification.
"""

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse

from notifications import services
from notifications.forms import NotificationContentForm
from notifications.models import Notification

#: The permission that lets staff send notifications from the user list.
SEND_PERMISSION = "notifications.add_notification"
#: Usernames listed on the "send notification" page; the rest are counted.
PREVIEW_USERS = 20


class ReadFilter(admin.SimpleListFilter):
    title = "read"
    parameter_name = "read"

    def lookups(self, request, model_admin):
        return [("unread", "Unread"), ("read", "Read")]

    def queryset(self, request, queryset):
        if self.value() == "unread":
            return queryset.filter(read_at__isnull=True)
        if self.value() == "read":
            return queryset.filter(read_at__isnull=False)
        return queryset


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """Notifications: adding one publishes it; editing corrects stored text only.

    Edits of an existing notification are saved as they are, without an event: streams
    have no "changed" event, and what they already showed is corrected when the page is
    loaded again. The recipient and the read state are read-only here, since changing
    either without an event would leave open pages (and their unread badge) wrong; use
    the "mark read" action, which goes through the service.
    """

    list_display = ("id", "to", "title", "level", "created_at", "read")
    list_display_links = ("id", "title")
    list_filter = ("level", ReadFilter, ("recipient", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("recipient",)
    search_fields = ("title", "body", "recipient__username")
    raw_id_fields = ("recipient",)
    date_hierarchy = "created_at"
    actions = ["mark_read"]

    @admin.display(ordering="recipient", description="recipient")
    def to(self, obj: Notification) -> str:
        return str(obj.recipient) if obj.recipient_id else "Everyone (announcement)"

    @admin.display(boolean=True, ordering="read_at", description="read")
    def read(self, obj: Notification) -> bool:
        return obj.is_read

    def get_fields(self, request, obj=None):
        fields = ["recipient", "title", "body", "url", "level"]
        if obj is not None:
            fields += ["created_at", "read_at"]
        return fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("recipient", "created_at", "read_at")

    def save_model(self, request, obj, form, change):
        """Create through the service (published after commit); save edits as they are.

        No recipient: an announcement to every user, stored once."""
        if change:
            super().save_model(request, obj, form, change)
            return
        content = {"title": obj.title, "body": obj.body, "url": obj.url, "level": obj.level}
        if obj.recipient is None:
            created = services.announcement_create(**content)
        else:
            created = services.notification_create(recipient=obj.recipient, **content)
        # The admin goes on with ``obj`` (log entry, "saved" message, redirect to its
        # change page): make it the row the service stored.
        obj.pk = created.pk
        obj.created_at = created.created_at
        obj._state.adding = False
        obj._state.db = created._state.db

    def delete_model(self, request, obj):
        """Delete through the service: the counter and open pages follow."""
        services.notifications_delete(notification_ids=[obj.pk])

    def delete_queryset(self, request, queryset):
        services.notifications_delete(notification_ids=queryset.values_list("pk", flat=True))

    @admin.action(description="Mark selected notifications read", permissions=["change"])
    def mark_read(self, request, queryset):
        # One UPDATE, then a ``read`` event per recipient with its unread count.
        changed = services.notifications_mark_read_many(
            notification_ids=queryset.values_list("pk", flat=True)
        )
        self.message_user(
            request,
            f"Marked {changed} notification{'' if changed == 1 else 's'} read.",
            messages.SUCCESS,
        )


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    """Django's user admin, with an action that notifies the selected users."""

    actions = ["send_notification"]

    def has_send_notification_permission(self, request) -> bool:
        return request.user.has_perm(SEND_PERMISSION)

    @admin.action(
        description="Send notification to selected users", permissions=["send_notification"]
    )
    def send_notification(self, request, queryset):
        """Ask for the notification on an intermediate page, then send it to the users."""
        submitted = "send" in request.POST
        form = NotificationContentForm(request.POST if submitted else None)
        active = queryset.filter(is_active=True)
        if submitted and form.is_valid():
            recipients = list(active.values_list("pk", flat=True))
            try:
                count = services.notifications_create_many(
                    recipients=recipients, **form.cleaned_data
                )
            except ValidationError as error:
                # The form mirrors the model's checks; this only keeps the two in step.
                form.add_error(None, error)
            else:
                self.message_user(
                    request,
                    f"Sent “{form.cleaned_data['title']}” to {count} "
                    f"user{'' if count == 1 else 's'}.",
                    messages.SUCCESS,
                )
                skipped = queryset.count() - count
                if skipped:
                    self.message_user(
                        request,
                        f"Skipped {skipped} inactive user{'' if skipped == 1 else 's'}.",
                        messages.WARNING,
                    )
                return None  # back to the user list
        total = queryset.count()
        context = {
            **self.admin_site.each_context(request),
            "title": "Send a notification",
            "opts": self.model._meta,
            "form": form,
            "media": self.media + form.media,
            "total": total,
            "active_count": active.count(),
            "preview": list(queryset.order_by("username")[:PREVIEW_USERS]),
            "more": max(0, total - PREVIEW_USERS),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/notifications/send_notification.html", context)
