"""Send a notification from the command line, to one user or to every active user.

The services publish after commit with ``async_to_sync(group_send)``. Here no event loop
is running, so each publish runs in a fresh loop that ``asyncio.run`` closes at once, and
channels-redis closes the connection pools it opened for that loop when the loop closes
(it wraps ``loop.close``). So the process leaves no Redis connection behind and exits as
soon as it is done (``tests/test_notify_command.py`` checks both).
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from notifications import services
from notifications.models import Notification

LEVELS = Notification.Level.values
TITLE_MAX_LENGTH = Notification._meta.get_field("title").max_length

IN_MEMORY_WARNING = (
    "Warning: the channel layer is in memory (REDIS_URL is not set), so this process cannot "
    "reach a running server: the notification is stored, and open pages show it when they "
    "reload or reconnect. Set REDIS_URL (for this command and the server) for live delivery."
)


def layer_is_in_memory() -> bool:
    """Whether the channel layer lives in this process only (no Redis)."""
    return settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("InMemoryChannelLayer")


def describe(error: ValidationError) -> str:
    """One line naming each invalid option and what is wrong with it."""
    if not hasattr(error, "error_dict"):
        return " ".join(error.messages)
    parts = []
    for field, messages in error.message_dict.items():
        text = " ".join(messages)
        if field == "level":
            text += f" Use one of: {', '.join(LEVELS)}."
        parts.append(f"--{field}: {text}")
    return "; ".join(parts)


class Command(BaseCommand):
    help = (
        "Store a notification for one user (--user) or every active user (--all) and push "
        "it to their open pages. Pages served by another process get it live only when "
        "REDIS_URL is set (in this command's environment and the server's)."
    )

    def add_arguments(self, parser):
        # --user and --all are checked in handle(), not by an argparse group, so that
        # giving both or neither is a one-line CommandError like every other mistake.
        parser.add_argument("--user", metavar="USERNAME", help="Notify this user.")
        parser.add_argument(
            "--all", dest="all_users", action="store_true", help="Notify every active user."
        )
        parser.add_argument(
            "--title",
            required=True,
            help=f"The headline (up to {TITLE_MAX_LENGTH} characters).",
        )
        parser.add_argument("--body", default="", help="Optional longer text.")
        parser.add_argument(
            "--url", default="", help="Optional link: a path on this site or an http(s) URL."
        )
        parser.add_argument(
            "--level",
            default=Notification.Level.INFO,
            metavar="|".join(LEVELS),
            help="How it is shown (default: info).",
        )

    def handle(self, *args, user, all_users, title, body, url, level, **options):
        if user is not None and all_users:
            raise CommandError("Give either --user USERNAME or --all, not both.")
        if user is None and not all_users:
            raise CommandError("Say whom to notify: --user USERNAME or --all.")
        content = {"title": title, "body": body, "url": url, "level": level}
        try:
            if all_users:
                count = services.notifications_create_for_active_users(**content)
                done = f"Notified {count:,} active user{'' if count == 1 else 's'}"
            else:
                recipient = self.active_user(user)
                notification = services.notification_create(recipient=recipient, **content)
                done = f"Notified {recipient.get_username()}: id {notification.pk}"
        except ValidationError as error:
            raise CommandError(f"Nothing was sent: {describe(error)}") from None
        self.stdout.write(done)
        if layer_is_in_memory():
            self.stderr.write(self.style.WARNING(IN_MEMORY_WARNING))

    def active_user(self, username: str):
        User = get_user_model()
        try:
            user = User._default_manager.get_by_natural_key(username)
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}: nothing was sent.") from None
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive: nothing was sent.")
        return user
