from django.contrib import admin

from jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Jobs as their workers left them, to look at: writes go through jobs.services."""

    list_display = ["id", "owner", "kind", "label", "state", "done", "total", "created_at"]
    list_filter = ["state", "kind"]
    search_fields = ["owner__username", "label"]
    list_select_related = ["owner"]
    ordering = ["-id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
