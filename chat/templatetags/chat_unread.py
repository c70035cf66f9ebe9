"""``{{ count|unread_label }}``: an unread count as pages show it ("99+" from the cap on)."""

from django import template

from chat.selectors import unread_label as _unread_label

register = template.Library()


@register.filter
def unread_label(count) -> str:
    """The count capped by ``chat.selectors.UNREAD_CAP``: ``100`` shows as "99+"."""
    return _unread_label(count)
