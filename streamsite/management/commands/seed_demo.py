"""Create the demo logins and chat rooms (idempotently) and print them."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from chat import services as chat_services
from chat.models import Room

DEMO_USERS = (
    # (username, is_staff and superuser)
    ("admin", True),
    ("alice", False),
    ("bob", False),
)

DEMO_ROOMS = (
    # (slug, name, is_private, {username: role}); the first user listed creates the room.
    ("lobby", "Lobby", False, {"admin": "moderator"}),
    ("staff", "Staff", True, {"admin": "moderator", "alice": "member"}),
)


class Command(BaseCommand):
    help = (
        "Create the demo logins (an admin and two users) with the password DEMO_PASSWORD, "
        "and two chat rooms: a public lobby and a private staff room. Running it again "
        "changes nothing but the passwords, which it resets, and the demo rooms' members. "
        "Development only: refuses when DEBUG is off unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--force",
            action="store_true",
            help="Seed even when DEBUG is off (the demo logins share one known password).",
        )

    def handle(self, *args, force=False, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo creates logins with a known password and is for development: "
                "DEBUG is off, so it did nothing (add --force if you really mean it)."
            )
        password = settings.DEMO_PASSWORD
        User = get_user_model()
        with transaction.atomic():
            for username, is_admin in DEMO_USERS:
                user, created = User.objects.get_or_create(
                    username=username, defaults={"email": f"{username}@example.com"}
                )
                user.is_staff = user.is_superuser = is_admin
                user.is_active = True
                user.set_password(password)
                user.save()
                verb = "created" if created else "exists, password reset"
                role = "admin" if is_admin else "user"
                self.stdout.write(f"  {role:<5} {username:<8} password: {password}   ({verb})")
            for slug, name, is_private, members in DEMO_ROOMS:
                created = self.seed_room(slug, name, is_private, members)
                kind = "private" if is_private else "public"
                verb = "created" if created else "exists"
                self.stdout.write(
                    f"  room  /chat/{slug}/  {kind}, {len(members)} member(s)   ({verb})"
                )
        self.stdout.write(self.style.SUCCESS("Demo logins ready. Admin: /admin/  Chat: /chat/"))

    def seed_room(self, slug: str, name: str, is_private: bool, members: dict[str, str]) -> bool:
        """Create the room unless it exists and give ``members`` their roles; True if created."""
        users = {u.username: u for u in get_user_model().objects.filter(username__in=members)}
        room = Room.objects.filter(slug=slug).first()
        created = room is None
        if created:
            creator = users[next(iter(members))]
            room = chat_services.room_create(
                creator=creator, name=name, slug=slug, is_private=is_private
            )
        for username, role in members.items():
            chat_services.membership_add(room=room, user=users[username], role=role)
        return created
