"""The notifications app's pages and streams (its features come with issue #3)."""

app_name = "notifications"
urlpatterns: list = []
