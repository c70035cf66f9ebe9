from django.apps import AppConfig


class StreamsiteConfig(AppConfig):
    """The project package as an app: site templates' home, and the site-wide commands."""

    name = "streamsite"
    verbose_name = "streamsite"

    def ready(self):
        from django.utils.autoreload import file_changed

        from streamsite.lifespan import on_startup
        from streamsite.observability.live import listen_in_background
        from streamsite.observability.tasks import count_tasks_forever
        from streamsite.shutdown import end_streams_before_reload
        from streamsite.streaming.db import skip_request_started_db_cleanup

        skip_request_started_db_cleanup()
        # runserver's reload ends every stream and socket first (clients reconnect).
        file_changed.connect(end_streams_before_reload)
        # Every server process hears when a dashboard is open (streamsite.observability.live).
        on_startup(listen_in_background)
        on_startup(count_tasks_forever)
