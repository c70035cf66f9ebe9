from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Long jobs (exports) run by task workers, with live progress on the user's stream."""

    name = "jobs"

    def ready(self):
        from jobs.services import stream_snapshot
        from notifications.extras import snapshot_register

        # On (re)connect, a user's notification stream sends where their jobs stand.
        snapshot_register(stream_snapshot)
