from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from streamsite import views
from streamsite.observability import health

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("notifications/", include("notifications.urls")),
    path("chat/", include("chat.urls")),
    path("assistant/", include("assistant.urls")),
    path("jobs/", include("jobs.urls")),
]
