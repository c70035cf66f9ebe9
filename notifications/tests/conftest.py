"""Fixtures shared by the notification stream tests."""

import pytest

from streamsite.streaming.hub import close_hub


@pytest.fixture
async def close_the_hub():
    """Streams use the running loop's hub; close it with the test."""
    yield
    await close_hub()
