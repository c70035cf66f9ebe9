"""Admin for rooms, memberships and messages.

Whatever would change what open sockets see goes through ``chat.services``, so it is
published after the admin's transaction commits: deleting a message (the page's delete
button and the list's action) erases it live from every client, and removing a member
(here or in a room's inline) ends their sockets' subscription to the room at once.
"""

from django.contrib import admin, messages

from chat import services
from chat.models import Membership, Message, Room


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "last_read_message_id", "joined_at")
    readonly_fields = ("last_read_message_id", "joined_at")
    raw_id_fields = ("user",)


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    """Rooms with their members inline; members added or removed here go through services."""

    list_display = ("name", "slug", "is_private", "assistant_enabled", "created_at")
    list_filter = ("is_private", "assistant_enabled")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    date_hierarchy = "created_at"
    inlines = [MembershipInline]

    def delete_model(self, request, obj):
        # Through the service, so the room's open sockets are told (and close).
        services.room_delete(room=obj)

    def delete_queryset(self, request, queryset):
        for room in queryset:
            services.room_delete(room=room)

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        room = form.instance
        # What formset.save() would record, for the admin's change message.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.deleted_forms:
            membership = inline_form.instance
            if membership.pk is not None:
                services.membership_remove(room=room, user=membership.user_id)
                formset.deleted_objects.append(membership)
        for inline_form in formset.forms:
            if inline_form in formset.deleted_forms or not inline_form.has_changed():
                continue
            data = inline_form.cleaned_data
            if inline_form.instance.pk is not None and "user" in inline_form.changed_data:
                # Moving a membership to another user is a removal and an addition.
                services.membership_remove(room=room, user=inline_form.initial["user"])
            membership, created = services.membership_add(
                room=room, user=data["user"], role=data["role"]
            )
            if created:
                formset.new_objects.append(membership)
            else:
                formset.changed_objects.append((membership, inline_form.changed_data))


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Memberships: adding and removing go through services (removal is live)."""

    list_display = ("room", "user", "role", "last_read_message_id", "joined_at")
    list_filter = ("role", ("room", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("room", "user")
    search_fields = ("room__name", "room__slug", "user__username")
    raw_id_fields = ("user",)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ("last_read_message_id", "joined_at")
        # Moving a membership would skip the removal's event: remove it and add another.
        return ("room", "user", "last_read_message_id", "joined_at")

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)  # the role only
            return
        membership, _created = services.membership_add(room=obj.room, user=obj.user, role=obj.role)
        # The admin goes on with ``obj`` (log entry, redirect): make it the stored row.
        obj.pk = membership.pk
        obj._state.adding = False
        obj._state.db = membership._state.db

    def delete_model(self, request, obj):
        services.membership_remove(room=obj.room, user=obj.user_id)

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("room"):
            services.membership_remove(room=membership.room, user=membership.user_id)


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return [("yes", "Deleted"), ("no", "Not deleted")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages, read-only: they are written in rooms. Deleting is live and keeps the row.

    Both the delete page and Django's "Delete selected messages" action (with its
    confirmation page) end in ``delete_model``/``delete_queryset``, which go through
    ``services.message_delete``: the text is erased, the row stays (marked deleted), and
    every open client removes the message.
    """

    list_display = ("id", "room", "author", "excerpt", "created_at", "deleted")
    list_display_links = ("id", "excerpt")
    list_filter = (("room", admin.RelatedOnlyFieldListFilter), DeletedFilter)
    list_select_related = ("room", "author")
    search_fields = ("body", "author__username")
    date_hierarchy = "created_at"
    fields = (
        "room", "author", "body", "assistant_answer_id", "client_id", "created_at", "edited_at",
        "deleted_at", "deleted_by",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="message")
    def excerpt(self, obj: Message) -> str:
        if obj.is_deleted:
            return "(deleted)"
        if obj.is_assistant_answer:
            return f"(the assistant's answer {obj.assistant_answer_id}, asked by {obj.author})"
        return obj.body if len(obj.body) <= 80 else obj.body[:79] + "…"

    @admin.display(boolean=True, ordering="deleted_at", description="deleted")
    def deleted(self, obj: Message) -> bool:
        return obj.is_deleted

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        services.message_delete(user=request.user, message=obj)

    def delete_queryset(self, request, queryset):
        deleted = 0
        for message in queryset.select_related("room"):
            deleted += services.message_delete(user=request.user, message=message)
        if deleted < len(queryset):
            self.message_user(
                request,
                f"{len(queryset) - deleted} of them had been deleted already.",
                messages.INFO,
            )
