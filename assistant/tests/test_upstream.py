"""Choosing the provider from the settings."""

from __future__ import annotations

from pathlib import Path

from assistant.upstream import OfflineProvider, OpenAICompatibleProvider, get_provider


def test_without_llm_base_url_the_offline_docs_assistant_answers(settings):
    settings.LLM_BASE_URL = ""
    settings.LLM_OFFLINE_TOKENS_PER_SECOND = 42

    provider = get_provider()

    assert isinstance(provider, OfflineProvider)
    assert provider.offline is True
    assert provider.name == "offline docs assistant"
    assert provider.tokens_per_second == 42
    assert provider.docs_dir == Path(settings.BASE_DIR) / "docs"
    assert provider.readme == Path(settings.BASE_DIR) / "README.md"


def test_with_llm_base_url_the_model_server_answers(settings):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1/"
    settings.LLM_API_KEY = "sk-key"
    settings.LLM_MODEL = "some-model"
    settings.LLM_TIMEOUT_SECONDS = 12
    settings.LLM_MAX_TOKENS = 99

    provider = get_provider()

    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.offline is False
    assert provider.name == "some-model"
    assert provider.url == "http://127.0.0.1:9/v1/chat/completions"
    assert (provider.timeout_seconds, provider.max_tokens) == (12, 99)
    assert "sk-key" not in repr(provider)


def test_one_provider_per_set_of_settings(settings):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    first = get_provider()
    assert get_provider() is first

    settings.LLM_MODEL = "another-model"
    assert get_provider() is not first
    assert get_provider().name == "another-model"
