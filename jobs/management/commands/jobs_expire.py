from django.core.management.base import BaseCommand

from jobs import services


class Command(BaseCommand):
    help = "Delete finished jobs older than JOB_RESULT_TTL_HOURS, with their files."

    def handle(self, *args, **options):
        expired = services.jobs_expire()
        self.stdout.write(f"Deleted {expired} expired job(s).")
