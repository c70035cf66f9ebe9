from django.urls import path

from assistant import views

app_name = "assistant"
urlpatterns = [
    path("", views.conversation_list, name="index"),
    path("new", views.conversation_new, name="new"),
    path("<int:conversation_id>/", views.conversation_detail, name="conversation"),
    path("<int:conversation_id>/ask", views.ask_form, name="ask_form"),
    path("<int:conversation_id>/messages", views.ask, name="messages"),
    path("<int:conversation_id>/stream", views.stream, name="stream"),
    path("<int:conversation_id>/answers/<int:answer_id>/stop", views.stop, name="stop"),
    path(
        "<int:conversation_id>/answers/<int:answer_id>/retry",
        views.again,
        {"how": "retry"},
        name="retry",
    ),
    path(
        "<int:conversation_id>/answers/<int:answer_id>/continue",
        views.again,
        {"how": "continue"},
        name="continue",
    ),
]
