"""The chat app's pages. The WebSocket routes are in chat/routing.py."""

from django.urls import path

from chat import views

app_name = "chat"
urlpatterns = [
    path("", views.room_list, name="index"),
    path("<slug:slug>/", views.room_detail, name="room"),
    path("<slug:slug>/messages/", views.message_create, name="post"),
    path("<slug:slug>/messages/<int:message_id>/delete/", views.message_delete, name="delete"),
    path("<slug:slug>/messages/<int:message_id>/stop/", views.answer_stop, name="answer_stop"),
    path("<slug:slug>/assistant/", views.room_assistant_set, name="assistant"),
    path("<slug:slug>/members/", views.member_add, name="member_add"),
    path("<slug:slug>/members/<int:user_id>/remove/", views.member_remove, name="member_remove"),
    path("<slug:slug>/export.ndjson", views.export, name="export"),
]
