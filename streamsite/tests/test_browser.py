"""The live-server and browser fixtures work end to end, on both servers."""

import pytest

from streamsite.testing import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.live_server]


async def test_logs_in_through_the_real_form_and_sees_the_username(
    live_server_asgi, browser_context, user
):
    page = await browser_context.new_page()
    await page.goto(f"{live_server_asgi.url}/accounts/login/")
    await page.fill("#id_username", user.username)
    await page.fill("#id_password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{live_server_asgi.url}/")
    assert await page.get_by_test_id("username").text_content() == user.username
    assert await page.get_by_test_id("welcome-username").text_content() == user.username


async def test_wrong_password_shows_an_error_not_a_crash(live_server_asgi, browser_context, user):
    page = await browser_context.new_page()
    await page.goto(f"{live_server_asgi.url}/accounts/login/")
    await page.fill("#id_username", user.username)
    await page.fill("#id_password", "not-the-password")
    await page.click("button[type=submit]")
    assert "didn't match" in await page.get_by_role("alert").text_content()


async def test_logged_in_page_fixture(logged_in_page, live_server_asgi, other_user):
    page = await logged_in_page(other_user)
    await page.goto(f"{live_server_asgi.url}/")
    assert await page.get_by_test_id("username").text_content() == other_user.username
