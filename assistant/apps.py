from django.apps import AppConfig


class AssistantConfig(AppConfig):
    """An assistant whose answers stream token by token, persisted as they stream."""

    name = "assistant"
    verbose_name = "Assistant"

    def ready(self):
        from assistant.runner import shutdown_runner
        from streamsite.lifespan import on_shutdown

        on_shutdown(shutdown_runner)
