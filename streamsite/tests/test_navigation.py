"""The header and the home page, as the server renders them (without JavaScript)."""

import pytest
from django.utils.html import escape

from assistant.models import Conversation
from chat.models import Membership
from chat.tests.factories import add_messages, room_with
from notifications.services import notification_create

pytestmark = pytest.mark.django_db


def nav_links(html: str) -> str:
    """The header's part of the page."""
    return html.split('<header class="site-header">', 1)[1].split("</header>", 1)[0]


def test_the_header_links_every_feature_and_marks_the_current_section(user_client):
    html = user_client.get("/chat/").content.decode()
    header = nav_links(html)
    for href in ("/chat/", "/assistant/", "/notifications/"):
        assert f'href="{href}"' in header
    assert 'href="/admin/"' not in header  # not staff
    assert header.count('aria-current="page"') == 1
    assert 'href="/chat/" aria-current="page"' in header
    assert 'href="/assistant/" aria-current="page"' in nav_links(
        user_client.get("/assistant/").content.decode()
    )


def test_staff_see_admin_and_visitors_see_log_in(client, staff_user):
    header = nav_links(client.get("/").content.decode())
    assert 'href="/accounts/login/"' in header
    assert 'href="/chat/"' not in header
    client.force_login(staff_user)
    assert 'href="/admin/"' in nav_links(client.get("/").content.decode())


def test_every_page_has_a_skip_link_to_main(user_client):
    html = user_client.get("/notifications/").content.decode()
    assert '<a class="skip-link" href="#main">' in html
    assert '<main id="main"' in html


def test_the_chat_link_counts_unread_messages(user_client, user, other_user):
    room = room_with("ops", members=[user, other_user])
    add_messages(room, other_user, 3)
    header = nav_links(user_client.get("/").content.decode())
    assert '>3<span class="visually-hidden"> unread</span>' in header
    assert "data-nav-chat-unread" in header


def test_the_chat_link_says_99_plus_from_the_cap_and_hides_a_zero(user_client, user, other_user):
    room = room_with("ops", members=[user, other_user])
    header = nav_links(user_client.get("/").content.decode())
    assert "data-nav-chat-unread" in header  # there for the live count to fill
    assert 'data-testid="nav-chat-unread" hidden>0<' in header
    add_messages(room, other_user, 150)
    header = nav_links(user_client.get("/").content.decode())
    assert '>99+<span class="visually-hidden"> unread</span>' in header


def test_home_for_a_visitor_says_what_the_site_is_and_offers_a_log_in(client):
    html = client.get("/").content.decode()
    assert "Real-time features" in html
    assert 'class="button-link" href="/accounts/login/"' in html


def test_home_for_a_user_is_a_dashboard_linking_on(user_client, user, other_user):
    ops = room_with("ops", members=[user, other_user])
    add_messages(ops, other_user, 2)
    quiet = room_with("quiet", members=[user])
    Membership.objects.filter(room=quiet).update(last_read_message_id=0)
    room_with("elsewhere")  # not joined: not on the dashboard
    notification_create(recipient=user, title="Deploy <finished>", url="/chat/ops/")
    conversation = Conversation.objects.create(owner=user, title="How do streams resume?")
    html = user_client.get("/").content.decode()
    dashboard = html.split('data-testid="dashboard"', 1)[1]
    # Unread rooms first.
    assert dashboard.index('href="/chat/ops/"') < dashboard.index('href="/chat/quiet/"')
    assert '2<span class="visually-hidden"> unread</span>' in dashboard
    assert "/chat/elsewhere/" not in dashboard
    assert escape("Deploy <finished>") in dashboard  # user text stays text
    assert f'href="/assistant/{conversation.pk}/"' in dashboard
