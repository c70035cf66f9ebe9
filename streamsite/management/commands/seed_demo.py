"""Create the demo logins (idempotently) and print them."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

DEMO_USERS = (
    # (username, is_staff and superuser)
    ("admin", True),
    ("alice", False),
    ("bob", False),
)


class Command(BaseCommand):
    help = (
        "Create the demo logins (an admin and two users) with the password DEMO_PASSWORD. "
        "Running it again changes nothing but the passwords, which it resets. "
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
        self.stdout.write(self.style.SUCCESS("Demo logins ready. Admin: /admin/"))
