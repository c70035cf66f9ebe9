"""Every main page in Chromium, light and dark, 1280 and 360 px wide and at 200 % zoom:
no serious or critical accessibility violation (axe-core), nothing wider than the screen,
and a screenshot of each saved under test-artifacts/screenshots/ for a person to look at.

Layout and accessibility do not depend on the server, so these run on one (daphne).
"""

import json

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from assistant.models import Conversation
from chat import services as chat_services
from chat.tests.factories import add_messages
from notifications.services import notification_create
from streamsite.testing.audit import axe_violations, save_screenshot
from streamsite.testing.browser import context_for

pytestmark = [pytest.mark.browser, pytest.mark.live_server]

WIDTHS = {
    "wide": {"width": 1280, "height": 800},
    "narrow": {"width": 360, "height": 740},
    # A 1280 x 800 screen at 200 % zoom: the same CSS pixels.
    "zoom200": {"width": 640, "height": 400},
}
SCHEMES = ("light", "dark")


#: A conversation worth a screenshot (README's come from these pages).
TALK = [
    ("bob", "Morning! Is the new build out?"),
    ("bob", "The release notes say chat resumes after a dropped connection."),
    ("alice", "It is: I pulled the plug on my Wi-Fi and nothing was lost."),
    ("alice", "Messages I wrote offline went out when it came back."),
    ("bob", "Nice. And the assistant?"),
    ("alice", "Mention @assistant in a room, or open Assistant in the header."),
    ("bob", "Trying it now.\nStop works mid-answer too."),
]


@pytest.fixture
def server(live_servers, transactional_db):
    return live_servers("daphne")


def seed(user, other_user):
    """A user with a room full of talk, notifications and a conversation with the assistant."""
    lobby = chat_services.room_create(creator=user, name="Lobby", slug="lobby")
    chat_services.room_create(creator=other_user, name="Design", slug="design")
    chat_services.membership_add(room=lobby, user=other_user)
    for author, body in TALK:
        add_messages(lobby, user if author == "alice" else other_user, 1, body=body)
    notification_create(
        recipient=user, title="Deploy finished", body="All green.", url="/chat/lobby/"
    )
    notification_create(recipient=user, title="Backup completed", level="success")
    conversation = Conversation.objects.create(owner=user, title="How do streams resume?")
    return lobby, conversation


async def audit(page, name: str):
    """Wait for the page to settle, save its screenshot, and return its violations."""
    await page.wait_for_load_state("load")
    await page.evaluate("document.fonts.ready")
    await save_screenshot(page, name)
    violations = await axe_violations(page)
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return violations, overflow


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", list(WIDTHS))
async def test_main_pages_have_no_serious_violations_and_fit_the_screen(
    browser, server, user, other_user, width, scheme
):
    lobby, conversation = await sync_to_async(seed)(user, other_user)
    options = {"viewport": WIDTHS[width], "color_scheme": scheme}
    visitor = await (await context_for(browser, server.url, **options)).new_page()
    page = await (await context_for(browser, server.url, user, **options)).new_page()
    pages = [
        (visitor, "/", "visitor-home"),
        (visitor, "/accounts/login/", "login"),
        (page, "/", "home"),
        (page, "/chat/", "chat-rooms"),
        (page, f"/chat/{lobby.slug}/", "chat-room"),
        (page, "/notifications/", "notifications"),
        (page, "/jobs/", "jobs"),
        (page, "/assistant/", "assistant"),
        (page, f"/assistant/{conversation.pk}/", "assistant-conversation"),
    ]
    problems = {}
    for tab, path, name in pages:
        await tab.goto(f"{server.url}{path}")
        if name == "chat-room":
            await expect(tab.get_by_test_id("chat")).to_have_attribute("data-chat-state", "live")
        violations, overflow = await audit(tab, f"{name}-{width}-{scheme}")
        if violations or overflow > 0:
            problems[name] = {"violations": violations, "overflow_px": overflow}
    assert problems == {}, json.dumps(problems, indent=1)


ADMIN_PAGES = [
    ("/admin/", "admin-index"),
    ("/admin/chat/room/", "admin-rooms"),
    ("/admin/chat/room/add/", "admin-room-add"),
    ("/admin/notifications/notification/", "admin-notifications"),
]


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_admin_pages_keep_their_header_link_the_site_and_pass_the_audit(
    browser, server, staff_user, scheme
):
    """The admin keeps its own header; the site's sections are in its user links. Django's
    own pages are audited like ours (wide screens: the admin is not built for phones)."""
    options = {"viewport": WIDTHS["wide"], "color_scheme": scheme}
    page = await (await context_for(browser, server.url, staff_user, **options)).new_page()
    problems = {}
    for path, name in ADMIN_PAGES:
        await page.goto(f"{server.url}{path}")
        await expect(page.locator("#site-name")).to_be_visible()  # the admin's own header
        violations, _overflow = await audit(page, f"{name}-wide-{scheme}")
        if violations:
            problems[name] = violations
    assert problems == {}, json.dumps(problems, indent=1)

    links = page.get_by_role("navigation", name="Site")
    for name in ("Chat", "Assistant", "Notifications", "Jobs"):
        await expect(links.get_by_role("link", name=name, exact=True)).to_be_visible()
    await links.get_by_role("link", name="Chat", exact=True).click()
    await expect(page).to_have_url(f"{server.url}/chat/")
    await expect(page.get_by_role("heading", name="Chat", level=1)).to_be_visible()
