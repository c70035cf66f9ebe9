"""Forms of the chat pages. They only carry input: the services validate and decide."""

from django import forms

from chat.models import Room

_room_field = Room._meta.get_field


class RoomCreateForm(forms.Form):
    """The "create a room" form of the room list."""

    name = forms.CharField(max_length=_room_field("name").max_length)
    slug = forms.CharField(
        required=False,
        max_length=_room_field("slug").max_length,
        # Django's form templates do not escape help texts: keep markup characters out.
        help_text="Letters, digits and hyphens: the room's address under /chat/. "
        "Leave it empty to make one from the name.",
    )
    is_private = forms.BooleanField(
        label="Private", required=False, help_text=_room_field("is_private").help_text
    )


class MessageForm(forms.Form):
    """The plain form that sends a message without JavaScript.

    ``client_id`` is made when the page is rendered, so submitting the same form twice (a
    double click, a resubmitted POST) stores the message once. Blank and too long bodies are
    refused by ``chat.services.message_post``, whose messages the form shows.
    """

    body = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 3}))
    client_id = forms.CharField(required=False, widget=forms.HiddenInput)


class MemberAddForm(forms.Form):
    """A moderator adds a user to the room by username."""

    username = forms.CharField(max_length=150)
