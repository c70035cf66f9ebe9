from django.apps import AppConfig


class StreamsiteConfig(AppConfig):
    """The project package as an app: site templates' home, and the site-wide commands."""

    name = "streamsite"
    verbose_name = "streamsite"

    def ready(self):
        from streamsite.streaming.db import skip_request_started_db_cleanup

        skip_request_started_db_cleanup()
