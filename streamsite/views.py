from django.shortcuts import render

from assistant.selectors import conversations_of
from chat.selectors import rooms_for

#: Assistant conversations on a user's home page.
HOME_CONVERSATIONS = 5


def home(request):
    """Render the home page: for a visitor what the site is and a log-in; for a user a
    dashboard (their rooms with unread counts, the latest notifications from the bell,
    their recent assistant conversations), each linking on."""
    if not request.user.is_authenticated:
        return render(request, "home.html")
    rooms = [room for room in rooms_for(request.user) if room.role is not None]
    rooms.sort(key=lambda room: (-(room.unread or 0), room.name.lower()))
    conversations = conversations_of(request.user)[:HOME_CONVERSATIONS]  # newest first
    return render(request, "home.html", {"rooms": rooms, "conversations": conversations})
