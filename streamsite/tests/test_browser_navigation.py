"""Finding one's way around in Chromium: by clicking links only, and by keyboard only.

No URL is typed after the first page: every step is a link, a button or a key, the way a
new user finds the features.
"""

import re

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from chat import services as chat_services
from chat.tests.factories import add_messages
from notifications.models import Notification
from notifications.services import notification_create
from streamsite.testing import PASSWORD
from streamsite.testing.browser import context_for, tab_to

pytestmark = [pytest.mark.browser, pytest.mark.live_server]

WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 360, "height": 740}


def lobby_with_news(user, other_user):
    """A room the user is in, with a message from bob, and a notification for the user."""
    lobby = chat_services.room_create(creator=other_user, name="Lobby", slug="lobby")
    chat_services.membership_add(room=lobby, user=user)
    add_messages(lobby, other_user, 1, body="Welcome aboard!")
    return lobby, notification_create(recipient=user, title="Your first notification")


async def log_in_by_clicking(page, server, user):
    await page.goto(f"{server.url}/")
    await page.get_by_role("main").get_by_role("link", name="Log in").click()
    await page.get_by_label("Username").fill(user.username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_test_id("username")).to_have_text(user.username)


async def open_section(page, name: str, *, narrow: bool):
    """Click a section in the header (opening the Menu first on a narrow screen)."""
    nav = page.get_by_role("navigation", name="Main")
    if narrow:
        await expect(nav.get_by_role("link", name=name)).to_be_hidden()
        await page.get_by_test_id("nav-toggle").click()
    await nav.get_by_role("link", name=re.compile(f"^{name}")).click()
    # Marked on the new page (folded away again there on a narrow screen).
    await expect(page.get_by_test_id(f"nav-{name.lower()}")).to_have_attribute(
        "aria-current", "page"
    )


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["wide", "narrow"])
async def test_a_new_user_reaches_a_room_notifications_and_the_assistant_by_links(
    browser, live_server_asgi, user, other_user, viewport
):
    await sync_to_async(lobby_with_news)(user, other_user)
    narrow = viewport is NARROW
    page = await (await context_for(browser, live_server_asgi.url, viewport=viewport)).new_page()
    await log_in_by_clicking(page, live_server_asgi, user)

    # The unread message shows on the header's Chat link and on the dashboard.
    await expect(page.get_by_test_id("nav-chat")).to_contain_text("1")
    await open_section(page, "Chat", narrow=narrow)
    await page.get_by_test_id("chat-rooms").get_by_role("link", name="Lobby").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Lobby")
    await expect(page.get_by_test_id("chat-messages")).to_contain_text("Welcome aboard!")
    await expect(page.get_by_role("textbox", name="Message")).to_be_in_viewport()

    await open_section(page, "Notifications", narrow=narrow)
    await expect(page.get_by_test_id("notification-list")).to_contain_text(
        "Your first notification"
    )

    await open_section(page, "Assistant", narrow=narrow)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Assistant")

    await page.get_by_role("link", name="streamsite").click()
    await expect(page.get_by_test_id("dashboard")).to_contain_text("Lobby")


async def test_keyboard_only_log_in_open_a_room_send_and_mark_a_notification_read(
    browser, live_server_asgi, user, other_user
):
    _lobby, notification = await sync_to_async(lobby_with_news)(user, other_user)
    page = await (await context_for(browser, live_server_asgi.url, viewport=WIDE)).new_page()
    keyboard = page.keyboard
    await page.goto(f"{live_server_asgi.url}/")

    # The first Tab reaches the skip link, which shows and moves focus to the content.
    await keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_in_viewport()

    await tab_to(page, "main a[href='/accounts/login/']")
    await keyboard.press("Enter")
    await expect(page.get_by_label("Username")).to_be_focused()  # autofocus
    await keyboard.type(user.username)
    await keyboard.press("Tab")
    await keyboard.type(PASSWORD)
    await keyboard.press("Enter")
    await expect(page.get_by_test_id("dashboard")).to_be_visible()

    # The header's sections are reachable (a <details> shown open on wide screens).
    await tab_to(page, "header a[href='/notifications/']", backwards=True)
    await tab_to(page, "main a[href='/chat/lobby/']")  # the dashboard's room
    await keyboard.press("Enter")
    await expect(page.get_by_test_id("chat")).to_have_attribute("data-chat-state", "live")
    await tab_to(page, "#chat-body")
    await keyboard.type("Sent with the keyboard")
    await keyboard.press("Shift+Enter")
    await keyboard.type("on two lines")
    await keyboard.press("Enter")
    sent = page.get_by_test_id("chat-messages").locator("li.is-sent")
    await expect(sent).to_have_count(1)
    await expect(sent.locator("[data-chat-body]")).to_have_text(
        "Sent with the keyboard\non two lines"
    )

    await tab_to(page, "[data-bell-button]", backwards=True)
    await keyboard.press("Enter")
    bell_item = page.get_by_test_id("bell-list").locator(
        f"[data-notification-id='{notification.pk}']"
    )
    await expect(bell_item).to_be_visible()
    await tab_to(page, f"[data-notification-id='{notification.pk}'] button")
    await keyboard.press("Enter")
    await expect(bell_item).to_have_class(re.compile(r"\bis-read\b"))
    await expect(page.get_by_test_id("bell-count")).to_be_hidden()

    def is_read() -> bool:
        return Notification.objects.get(pk=notification.pk).is_read

    assert await sync_to_async(is_read)()


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["wide", "narrow"])
async def test_without_javascript_the_links_the_panels_and_the_composer_still_work(
    browser, live_server_asgi, user, other_user, viewport
):
    """The header's menu and the room's folded panels are plain <details>; the composer
    posts the plain form."""
    await sync_to_async(lobby_with_news)(user, other_user)
    narrow = viewport is NARROW
    context = await context_for(
        browser, live_server_asgi.url, viewport=viewport, java_script_enabled=False
    )
    page = await context.new_page()
    await log_in_by_clicking(page, live_server_asgi, user)
    await open_section(page, "Chat", narrow=narrow)
    await page.get_by_test_id("chat-rooms").get_by_role("link", name="Lobby").click()

    members = page.get_by_test_id("chat-members")
    if narrow:
        await expect(members).to_be_hidden()  # folded away
        await page.get_by_text("People", exact=True).click()
    await expect(members).to_contain_text(other_user.username)

    await page.get_by_role("textbox", name="Message").fill("Posted without JavaScript")
    await page.get_by_role("button", name="Send").click()
    await expect(
        page.get_by_test_id("chat-messages").locator("li.chat-message").last
    ).to_contain_text("Posted without JavaScript")
