"""Forms of the notifications app."""

from django import forms

from notifications.models import Notification
from notifications.validators import validate_notification_url

_field = Notification._meta.get_field


class NotificationContentForm(forms.Form):
    """What a notification says, without its recipient: the admin's "send to users" page.

    The limits and choices are the model's, so what the form accepts the service accepts.
    """

    title = forms.CharField(max_length=_field("title").max_length)
    body = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        max_length=_field("body").max_length,
    )
    url = forms.CharField(
        label="Link",
        required=False,
        max_length=_field("url").max_length,
        validators=[validate_notification_url],
        help_text=_field("url").help_text,
    )
    level = forms.ChoiceField(choices=Notification.Level.choices, initial=Notification.Level.INFO)
