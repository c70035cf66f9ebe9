"""Drive Debian's Chromium headless through Playwright (its own browser downloads do not
work here, so Playwright is pointed at ``/usr/bin/chromium``)."""

from __future__ import annotations

from streamsite.testing.live_server import session_cookies
from streamsite.testing.services import CHROMIUM

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


async def launch_chromium(playwright):
    """Launch headless Chromium with flags that keep it off the (closed) network."""
    return await playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def session_cookie_for(user, server_url: str) -> dict:
    """Return a Playwright cookie that logs the browser in as ``user`` on ``server_url``.

    The session is created in the shared test database, so the server process finds it.
    """
    ((name, value),) = session_cookies(user).items()
    return {"name": name, "value": value, "url": server_url}
