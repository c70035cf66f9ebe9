from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from streamsite import views
from streamsite.observability import exposition, health
from streamsite.observability import views as live_views

urlpatterns = [
    path("", views.home, name="home"),
    path("metrics", exposition.metrics_view, name="metrics"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Before the admin's own URLs, which would answer /admin/live/ with a 404.
    path("admin/live/", live_views.live_page, name="admin-live"),
    path("admin/live/stream/", live_views.live_stream, name="admin-live-stream"),
    path("admin/", admin.site.urls),
    path("notifications/", include("notifications.urls")),
    path("chat/", include("chat.urls")),
    path("assistant/", include("assistant.urls")),
    path("jobs/", include("jobs.urls")),
]
