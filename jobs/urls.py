from django.urls import path

from jobs import views

app_name = "jobs"

urlpatterns = [
    path("", views.job_list, name="list"),
    path("notifications-export/", views.notifications_export_start, name="notifications_export"),
    path("room-export/<slug:slug>/", views.room_export_start, name="room_export"),
    path("<int:job_id>/cancel/", views.job_cancel, name="cancel"),
    path("<int:job_id>/download/", views.job_download, name="download"),
]
