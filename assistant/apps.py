from django.apps import AppConfig


class AssistantConfig(AppConfig):
    """An assistant whose answers stream token by token, persisted as they stream."""

    name = "assistant"
    verbose_name = "Assistant"
