"""Where answers come from: an OpenAI-compatible server, or the offline docs assistant."""


def get_provider():
    """The provider the settings name (provisional; replaced by the upstream branch)."""
    from django.conf import settings

    if settings.LLM_BASE_URL:
        from assistant.upstream.openai_compat import OpenAICompatibleProvider

        return OpenAICompatibleProvider(
            settings.LLM_BASE_URL,
            settings.LLM_API_KEY,
            settings.LLM_MODEL,
            settings.LLM_TIMEOUT_SECONDS,
            settings.LLM_MAX_TOKENS,
        )
    from assistant.upstream.offline import OfflineProvider

    return OfflineProvider(
        settings.LLM_OFFLINE_TOKENS_PER_SECOND,
        settings.BASE_DIR / "docs",
        settings.BASE_DIR / "README.md",
    )
