"""The chat app's pages (its features come with issue #4)."""

app_name = "chat"
urlpatterns: list = []
