"""The bell in a real Chromium against the real server: live, shared by tabs, resumable.

Live delivery needs the notification to be created where the stream is: on the embedded
backend the in-memory channel layer of the test process reaches no server. So these tests
create notifications in the server process, through the admin (which saves through
``notifications.services``), the way a staff member sends one: one path on every backend.
Notifications that only have to be *replayed* (after a restart, on reload) are created
here, in the shared database.
"""

import asyncio
import re

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from playwright.async_api import expect

from notifications import services
from notifications.models import Notification
from streamsite.testing.browser import session_cookie_for

pytestmark = [pytest.mark.browser, pytest.mark.live_server]

BELL_CONTEXT_PROCESSOR = "notifications.context_processors.bell"
STREAM_PATH = "/notifications/stream/"
#: The promise: a notification is on the open page this soon after it is saved.
DELIVERY_MS = 2_000
#: Longer waits: a stream that reconnects (the browser's own retry is 2 s, then backoff).
RECONNECT_MS = 15_000
#: A server's hub re-joins its groups within three missed heartbeats (5 s each).
HUB_RECOVERY_MS = 25_000

create_notification = sync_to_async(services.notification_create)


# Helpers ---------------------------------------------------------------------------------


def require_the_bell() -> None:
    """The server renders the bell only with its context processor in the settings."""
    processors = settings.TEMPLATES[0]["OPTIONS"]["context_processors"]
    if BELL_CONTEXT_PROCESSOR not in processors:
        pytest.fail(f"add {BELL_CONTEXT_PROCESSOR!r} to TEMPLATES' context_processors")


async def logged_in_context(browser, server, user, **options):
    """A fresh browser profile logged in as ``user`` on ``server``, which draws the bell."""
    require_the_bell()
    context = await browser.new_context(**options)
    context.set_default_timeout(10_000)
    await context.add_cookies([await sync_to_async(session_cookie_for)(user, server.url)])
    return context


async def open_live(context, url: str):
    """Open ``url`` in a new page of ``context`` and wait until its notifications are live."""
    page = await context.new_page()
    await page.goto(url)
    await expect_live(page)
    return page


async def expect_live(page, within_ms: float = 10_000):
    """Wait until the page's stream (its own or its leader tab's) is open."""
    await expect(page.locator("body")).to_have_attribute(
        "data-notifications-state", "live", timeout=within_ms
    )


def bell_count(page):
    return page.get_by_test_id("bell-count")


def toast(page, title: str):
    """A toast: in the page's polite live region (read once by screen readers)."""
    return (
        page.locator("[data-toast-region][role=log]")
        .get_by_test_id("notification-toast")
        .filter(has_text=title)
    )


def stream_requests(context, resource_type: str | None = None) -> list[str]:
    """Record the URL of every request any page of ``context`` makes to the stream.

    ``resource_type`` keeps only EventSource's (``"eventsource"``) or fetch's (``"fetch"``).
    """
    urls: list[str] = []

    def record(request) -> None:
        if STREAM_PATH in request.url and resource_type in (None, request.resource_type):
            urls.append(request.url)

    context.on("request", record)
    return urls


class AdminSender:
    """Create notifications in the server process, as staff do: through the admin.

    It uses the user list's "Send notification to selected users" action rather than the
    notification add form. The add form also writes an admin LogEntry with a content type
    id that the session-long server process has cached, while the flush after every
    transactional test recreates the content types under new ids: from the second test on
    the add form fails with a foreign key error. The action writes no LogEntry.
    """

    def __init__(self, page, server) -> None:
        self.page = page
        self.server = server

    async def send(self, recipient, title: str, body: str = "", url: str = "") -> Notification:
        page = self.page
        await page.goto(f"{self.server.url}/admin/auth/user/")
        await page.locator(f'input[name="_selected_action"][value="{recipient.pk}"]').check()
        await page.locator('select[name="action"]').select_option("send_notification")
        await page.locator('button[name="index"]').click()
        await page.fill("#id_title", title)
        if body:
            await page.fill("#id_body", body)
        if url:
            await page.fill("#id_url", url)
        await page.get_by_role("button", name="Send to 1 user").click()
        await expect(page.locator(".messagelist .success")).to_contain_text("Sent")
        return await Notification.objects.filter(recipient=recipient, title=title).alatest("id")


@pytest.fixture
async def sender(browser, live_server_asgi, staff_user, make_user):
    """Send notifications from a staff member's own browser profile, via the admin.

    Before a test times a delivery, a probe proves that the server receives what it
    publishes. On Redis the session's servers share the layer with the test process, and
    the ``channel_layer`` fixture of earlier tests flushes it: that deletes every group,
    the servers' memberships included, and a server's hub takes up to three heartbeats
    (15 s) to notice and re-join. A probe delivered means it has.
    """
    context = await logged_in_context(browser, live_server_asgi, staff_user)
    admin = AdminSender(await context.new_page(), live_server_asgi)
    probe_user = await sync_to_async(make_user)("probe")
    probe = await open_live(
        await logged_in_context(browser, live_server_asgi, probe_user), f"{live_server_asgi.url}/"
    )
    await admin.send(probe_user, "Probe")
    await expect(bell_count(probe)).to_have_text("1", timeout=HUB_RECOVERY_MS)
    await probe.context.close()
    yield admin
    await context.close()


# Live delivery ---------------------------------------------------------------------------


async def test_a_new_notification_shows_on_the_open_page_within_two_seconds(
    browser, live_server_asgi, sender, user
):
    """The badge counts it and a toast shows it, without reloading the page."""
    context = await logged_in_context(browser, live_server_asgi, user)
    page = await open_live(context, f"{live_server_asgi.url}/")
    await expect(bell_count(page)).to_be_hidden()

    await sender.send(user, "Deploy finished", body="All green.", url="/notifications/")

    await expect(bell_count(page)).to_have_text("1", timeout=DELIVERY_MS)
    new_toast = toast(page, "Deploy finished")
    await expect(new_toast).to_be_visible(timeout=DELIVERY_MS)
    await expect(new_toast).to_contain_text("All green.")
    await expect(new_toast.get_by_role("link")).to_have_attribute(
        "href", f"{live_server_asgi.url}/notifications/"
    )
    item = page.get_by_test_id("bell-list").locator("li").first
    await expect(item).to_contain_text("Deploy finished")
    await expect(new_toast).to_be_hidden(timeout=10_000)  # it goes away by itself


async def test_the_admin_header_bell_is_live_too(browser, live_server_asgi, sender, staff_user):
    context = await logged_in_context(browser, live_server_asgi, staff_user)
    page = await open_live(context, f"{live_server_asgi.url}/admin/")
    header_bell = page.locator("#header").get_by_test_id("bell-count")
    await expect(header_bell).to_be_hidden()
    # The admin's own links are still there.
    await expect(page.locator("#user-tools").get_by_role("link", name="View site")).to_be_visible()

    await sender.send(staff_user, "Backup completed")

    await expect(header_bell).to_have_text("1", timeout=DELIVERY_MS)
    await expect(toast(page, "Backup completed")).to_be_visible(timeout=DELIVERY_MS)


async def test_a_title_that_is_html_shows_as_text_and_runs_nothing(
    browser, live_server_asgi, sender, user
):
    title = "<img src=x onerror=alert(1)>"
    body = "<script>alert(2)</script>"
    context = await logged_in_context(browser, live_server_asgi, user)
    dialogs = []
    context.on("dialog", lambda dialog: dialogs.append(dialog.message))
    page = await open_live(context, f"{live_server_asgi.url}/")

    await sender.send(user, title, body=body)

    live_toast = toast(page, title)
    await expect(live_toast).to_be_visible(timeout=DELIVERY_MS)
    await expect(live_toast).to_contain_text(body)
    live_item = page.get_by_test_id("bell-list").locator("li").first
    await expect(live_item).to_contain_text(title)
    # The markup became text: no element was made from it, so nothing could run.
    assert await page.locator("img").count() == 0
    assert await page.locator("body script").count() == 0

    # Rendered by the server as well (drop-down and list page).
    await page.goto(f"{live_server_asgi.url}/notifications/")
    await expect(page.get_by_test_id("notification-list")).to_contain_text(title)
    await expect(page.get_by_test_id("bell-list")).to_contain_text(title)
    assert await page.locator("img").count() == 0
    assert dialogs == []


async def test_a_javascript_url_written_past_validation_is_no_link_on_the_pages(
    browser, live_server_asgi, user
):
    """Issue #13: a notification whose url is ``javascript:`` (written with the ORM, around
    validation) was a working link in the server-rendered list and bell: clicking ran it.
    Now its title is plain text in both, and clicking it runs nothing."""
    await sync_to_async(Notification.objects.create)(
        recipient=user, title="Click me", url="javascript:alert(document.domain)"
    )
    context = await logged_in_context(browser, live_server_asgi, user)
    dialogs = []
    context.on("dialog", lambda dialog: dialogs.append(dialog.message))
    page = await open_live(context, f"{live_server_asgi.url}/notifications/")

    for where in ("notification-list", "bell-list"):
        item = page.get_by_test_id(where).locator("li").filter(has_text="Click me")
        await expect(item).to_have_count(1)
        assert await item.locator("a", has_text="Click me").count() == 0
    assert await page.locator('a[href^="javascript:" i]').count() == 0
    await page.get_by_test_id("notification-list").get_by_text("Click me").click()
    await page.get_by_test_id("bell-list").get_by_text("Click me").click(force=True)
    await expect_live(page)  # still the same page, live
    assert dialogs == []


# Sharing one stream ----------------------------------------------------------------------


async def test_eight_tabs_share_one_stream_and_all_stay_live(
    browser, live_server_asgi, sender, user
):
    """One EventSource for the browser; when its tab closes another tab takes over."""
    context = await logged_in_context(browser, live_server_asgi, user)
    streams = stream_requests(context)
    pages = [await context.new_page() for _ in range(8)]
    # All at once: the tabs race for the lock.
    await asyncio.gather(*(page.goto(f"{live_server_asgi.url}/") for page in pages))
    for page in pages:
        await expect_live(page)

    first = await sender.send(user, "Hello, eight tabs")
    for page in pages:
        await expect(bell_count(page)).to_have_text("1", timeout=DELIVERY_MS)
        await expect(toast(page, "Hello, eight tabs")).to_be_visible(timeout=DELIVERY_MS)
    assert len(streams) == 1, streams

    # Close the tab that holds the stream: another one opens it, from the last id seen.
    roles = [await page.evaluate("document.body.dataset.notificationsRole") for page in pages]
    assert sorted(roles) == ["follower"] * 7 + ["leader"]
    leader = pages.pop(roles.index("leader"))
    await leader.close()
    async with context.expect_event(
        "request", predicate=lambda request: STREAM_PATH in request.url
    ) as takeover:
        await leader.close()
    assert f"last_event_id={first.pk}" in (await takeover.value).url
    for page in pages:
        await expect_live(page)

    await sender.send(user, "Still here")
    for page in pages:
        await expect(bell_count(page)).to_have_text("2", timeout=DELIVERY_MS)
        await expect(page.get_by_test_id("bell-list")).to_contain_text("Still here")
    assert len(streams) == 2, streams


async def test_without_web_locks_every_tab_has_its_own_stream(
    browser, live_server_asgi, sender, user
):
    context = await logged_in_context(browser, live_server_asgi, user)
    await context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined });"
    )
    streams = stream_requests(context)
    pages = [await open_live(context, f"{live_server_asgi.url}/") for _ in range(2)]
    for page in pages:
        await expect(page.locator("body")).to_have_attribute("data-notifications-role", "solo")
    assert len(streams) == 2

    await sender.send(user, "To every tab")
    for page in pages:
        await expect(bell_count(page)).to_have_text("1", timeout=DELIVERY_MS)
        await expect(toast(page, "To every tab")).to_be_visible(timeout=DELIVERY_MS)


async def test_marking_read_in_one_tab_updates_the_others(browser, live_server_asgi, user):
    """Mark read posts with fetch (no page load); the stream tells the other tabs."""
    notification = await create_notification(recipient=user, title="Read me")
    context = await logged_in_context(browser, live_server_asgi, user)
    one = await open_live(context, f"{live_server_asgi.url}/")
    other = await open_live(context, f"{live_server_asgi.url}/notifications/")
    await expect(bell_count(one)).to_have_text("1")

    await one.locator("[data-bell-button]").click()
    item = one.locator(f'.bell-item[data-notification-id="{notification.pk}"]')
    await item.get_by_role("button", name="Mark read").click()

    await expect(item).to_have_class(re.compile(r"\bis-read\b"))
    await expect(bell_count(one)).to_be_hidden()
    await expect(bell_count(other)).to_be_hidden(timeout=DELIVERY_MS)
    listed = other.locator(f"#notification-{notification.pk}")
    await expect(listed).to_have_class(re.compile(r"\bis-read\b"), timeout=DELIVERY_MS)
    await expect(listed.locator("[data-notification-status]")).to_have_text("Read")
    assert one.url == f"{live_server_asgi.url}/"  # no navigation
    assert await Notification.objects.filter(pk=notification.pk, read_at__isnull=False).aexists()


# Resuming --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_after_a_server_restart_the_page_gets_what_was_sent_meanwhile(
    browser, live_server_factory, user, kind
):
    server = await sync_to_async(live_server_factory)(kind)
    context = await logged_in_context(browser, server, user)
    page = await open_live(context, f"{server.url}/")

    await sync_to_async(server.stop)()
    await expect(page.locator("body")).not_to_have_attribute(
        "data-notifications-state", "live", timeout=RECONNECT_MS
    )
    await create_notification(recipient=user, title="Sent while you were away")
    await create_notification(recipient=user, title="And another")
    await sync_to_async(server.start)()

    await expect_live(page, within_ms=RECONNECT_MS)
    await expect(bell_count(page)).to_have_text("2", timeout=RECONNECT_MS)
    await expect(toast(page, "Sent while you were away")).to_be_visible()
    await expect(toast(page, "And another")).to_be_visible()


async def test_a_stream_refused_with_an_http_error_is_retried_from_the_last_id(
    browser, live_server_asgi, user
):
    """EventSource gives up on an HTTP error; the client retries (with backoff) itself."""
    seen = await create_notification(recipient=user, title="Already on the page")
    context = await logged_in_context(browser, live_server_asgi, user)
    streams = stream_requests(context, "eventsource")
    refused = []

    async def refuse_once(route):
        if not refused:
            refused.append(route.request.url)
            await route.fulfill(status=503, content_type="text/plain", body="try later")
        else:
            await route.continue_()

    await context.route(re.compile(re.escape(STREAM_PATH)), refuse_once)
    page = await context.new_page()
    await page.goto(f"{live_server_asgi.url}/")
    await expect_live(page)
    assert len(refused) == 1
    assert len(streams) == 2
    assert f"last_event_id={seen.pk}" in streams[1]

    # The retried stream is the live one: it replays nothing already on the page.
    await expect(bell_count(page)).to_have_text("1")
    assert await page.get_by_role("status").count() == 0


async def test_a_page_whose_session_logged_out_stops_asking_for_the_stream(
    browser, live_server_asgi, user
):
    """The server ends the stream at logout and refuses it (403): no retries for ever."""
    context = await logged_in_context(browser, live_server_asgi, user)
    sources = stream_requests(context, "eventsource")
    probes = stream_requests(context, "fetch")
    page = await open_live(context, f"{live_server_asgi.url}/")
    other_tab = await open_live(context, f"{live_server_asgi.url}/notifications/")
    await expect(page.locator("body")).to_have_attribute("data-notifications-role", "leader")

    await other_tab.get_by_role("button", name="Log out").click()

    await expect(page.locator("body")).to_have_attribute(
        "data-notifications-state", "stopped", timeout=RECONNECT_MS
    )
    # The open stream, the browser's own reconnect (403), and one fetch that saw the 403.
    assert len(sources) == 2, sources
    assert len(probes) == 1, probes


# The reconnect helper --------------------------------------------------------------------


async def test_reconnect_backoff_doubles_from_one_second_to_thirty_with_full_jitter(
    live_server_asgi, browser_context
):
    page = await browser_context.new_page()
    await page.goto(f"{live_server_asgi.url}/accounts/login/")
    result = await page.evaluate(
        """async () => {
            const reconnect = await import("/static/js/reconnect.js");
            const { Backoff, backoffCeiling, backoffDelay } = reconnect;
            const ceilings = [0, 1, 2, 3, 4, 5, 6, 40].map((n) => backoffCeiling(n));
            const highest = [0, 1, 5].map((n) => backoffDelay(n, { random: () => 0.9999 }));
            const lowest = backoffDelay(3, { random: () => 0 });
            const backoff = new Backoff({ baseMs: 1, maxMs: 8, random: () => 0.9999 });
            const delays = [];
            for (let i = 0; i < 5; i++) {
                delays.push(backoff.schedule(() => {}));
                backoff.cancel();
            }
            const whilePending = [backoff.schedule(() => {}), backoff.schedule(() => {})];
            await new Promise((resolve) => setTimeout(resolve, 20));
            backoff.reset();
            const afterReset = backoff.schedule(() => {});
            backoff.cancel();
            return { ceilings, highest, lowest, delays, whilePending, afterReset };
        }"""
    )
    assert result["ceilings"] == [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    assert result["highest"] == [999, 1999, 29997]
    assert result["lowest"] == 0
    assert result["delays"] == [0, 1, 3, 7, 7]
    assert result["whilePending"][1] == -1  # one retry at a time
    assert result["afterReset"] == 0


# Without JavaScript ----------------------------------------------------------------------


async def test_the_bell_and_mark_read_work_without_javascript(browser, live_server_asgi, user):
    notification = await create_notification(recipient=user, title="Plain HTML", body="No JS")
    context = await logged_in_context(browser, live_server_asgi, user, java_script_enabled=False)
    page = await context.new_page()
    await page.goto(f"{live_server_asgi.url}/")
    await expect(bell_count(page)).to_have_text("1")

    await page.locator("[data-bell-button]").click()  # a <details>: opens by itself
    item = page.locator(f'.bell-item[data-notification-id="{notification.pk}"]')
    await expect(item).to_contain_text("No JS")
    await item.get_by_role("button", name="Mark read").click()

    await page.wait_for_url(f"{live_server_asgi.url}/")
    await expect(bell_count(page)).to_be_hidden()
    await page.locator("[data-bell-button]").click()
    await expect(page.get_by_role("link", name="See all")).to_have_attribute(
        "href", "/notifications/"
    )
