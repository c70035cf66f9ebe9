"""Where answers come from: an OpenAI-compatible server, or the offline docs assistant."""

from __future__ import annotations

import functools
from pathlib import Path

from django.conf import settings

from .base import Chunk, Provider, UpstreamError, Usage
from .http_clients import aclose_clients
from .offline import OfflineProvider
from .openai_compat import OpenAICompatibleProvider

__all__ = [
    "Chunk",
    "OfflineProvider",
    "OpenAICompatibleProvider",
    "Provider",
    "UpstreamError",
    "Usage",
    "aclose_clients",
    "get_provider",
]


def get_provider() -> Provider:
    """The provider the settings name: the offline docs assistant when LLM_BASE_URL is unset.

    Settings are read at each call (tests override them), and one provider is kept per
    distinct set of values.
    """
    return _provider(
        settings.LLM_BASE_URL,
        settings.LLM_API_KEY,
        settings.LLM_MODEL,
        settings.LLM_TIMEOUT_SECONDS,
        settings.LLM_MAX_TOKENS,
        settings.LLM_OFFLINE_TOKENS_PER_SECOND,
        Path(settings.BASE_DIR),
    )


@functools.lru_cache(maxsize=8)
def _provider(
    base_url: str,
    api_key: str,
    model: str,
    timeout_seconds: int,
    max_tokens: int,
    offline_tokens_per_second: int,
    base_dir: Path,
) -> Provider:
    if not base_url:
        return OfflineProvider(offline_tokens_per_second, base_dir / "docs", base_dir / "README.md")
    return OpenAICompatibleProvider(base_url, api_key, model, timeout_seconds, max_tokens)
