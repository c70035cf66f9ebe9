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


async def context_for(browser, server_url: str, user=None, **options):
    """A fresh browser profile (``options``: viewport, color_scheme…), logged in as ``user``
    when one is given."""
    from asgiref.sync import sync_to_async

    context = await browser.new_context(**options)
    context.set_default_timeout(10_000)
    if user is not None:
        await context.add_cookies([await sync_to_async(session_cookie_for)(user, server_url)])
    return context


async def tab_to(page, selector: str, *, limit: int = 80, backwards: bool = False):
    """Press Tab (Shift+Tab) until the focused element matches ``selector``, as a keyboard
    user would; fail after ``limit`` presses. Returns the number of presses."""
    key = "Shift+Tab" if backwards else "Tab"
    for presses in range(1, limit + 1):
        await page.keyboard.press(key)
        if await page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return presses
    focused = await page.evaluate("document.activeElement?.outerHTML.slice(0, 120)")
    raise AssertionError(f"{selector} not reached in {limit} presses of {key} (at {focused})")
