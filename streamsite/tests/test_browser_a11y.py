"""Accessibility the audit (axe-core) does not see, in Chromium: the focus is visible on
everything a keyboard reaches, a new chat message is announced once through a polite live
region, and motion stops for those who ask for less of it."""

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from chat import services
from chat.tests.test_browser import expect_state, send
from streamsite.testing.browser import context_for

pytestmark = [pytest.mark.browser, pytest.mark.live_server]


@pytest.fixture
def server(live_servers, transactional_db):
    """What the page draws does not depend on the server: one kind (daphne) is enough."""
    return live_servers("daphne")


#: Tab presses on the home page at most: the skip link, the header, the dashboard's links.
PRESSES = 40

FOCUS_STYLE = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  if (el === document.body) return null;  // past the last one
  return {
    what: el.outerHTML.slice(0, 60),
    style: style.outlineStyle,
    width: parseFloat(style.outlineWidth),
  };
}"""


def lobby_of(user, other_user):
    room = services.room_create(creator=user, name="Lobby", slug="lobby")
    services.membership_add(room=room, user=other_user)
    return room


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_everything_the_keyboard_reaches_shows_a_visible_focus(
    browser, server, user, other_user, scheme
):
    await sync_to_async(lobby_of)(user, other_user)
    context = await context_for(browser, server.url, user, color_scheme=scheme)
    page = await context.new_page()
    await page.goto(f"{server.url}/")
    reached, unseen = 0, []
    for _ in range(PRESSES):
        await page.keyboard.press("Tab")
        focus = await page.evaluate(FOCUS_STYLE)
        if focus is None:
            break
        reached += 1
        if focus["style"] == "none" or focus["width"] < 2:
            unseen.append(focus)
    assert reached >= 10  # skip link, header (menu, sections, bell, log out), dashboard
    assert unseen == []


async def test_a_new_message_is_announced_once_in_a_polite_live_region(
    browser, server, user, other_user
):
    room = await sync_to_async(lobby_of)(user, other_user)
    pages = []
    for who in (user, other_user):
        page = await (await context_for(browser, server.url, who)).new_page()
        await page.goto(f"{server.url}/chat/{room.slug}/")
        await expect_state(page, "live")
        pages.append(page)
    alice, bob = pages
    announcer = alice.locator("[data-chat-announcer]")
    await expect(announcer).to_have_attribute("aria-live", "polite")

    await send(bob, "Hello there")

    await expect(announcer).to_have_text("bob: Hello there")
    # bob's own page does not read his message back to him.
    await expect(bob.locator("[data-chat-announcer]")).to_have_text("")


@pytest.mark.parametrize("motion", ["reduce", "no-preference"])
async def test_toasts_slide_in_only_for_those_who_do_not_ask_for_less_motion(
    browser, server, user, motion
):
    """The toast's entrance is the site's one moving animation (assistant.css stops its
    blinking caret under the same media query); site.css cuts any other short."""
    context = await context_for(browser, server.url, user, reduced_motion=motion)
    page = await context.new_page()
    await page.goto(f"{server.url}/notifications/")
    animation = await page.evaluate(
        """() => {
          const toast = document.createElement("div");
          toast.className = "toast";
          document.querySelector("[data-toast-region]").append(toast);
          const style = getComputedStyle(toast);
          const root = getComputedStyle(document.documentElement);
          return {name: style.animationName, scroll: root.scrollBehavior};
        }"""
    )
    if motion == "reduce":
        assert animation == {"name": "none", "scroll": "auto"}
    else:
        assert animation["name"] == "toast-in"
