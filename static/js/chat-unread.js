// Live unread chat counts: the header's "Chat" count and the rooms' badges (the room
// page's sidebar, the home dashboard), from `event: chat-unread` on the notification
// stream (chat/unread_watch.py), which notifications.js re-dispatches on window as
// "streamsite:chat-unread" with {total, rooms: {slug: count}, cap}. Counts stop at `cap`,
// shown as "99+". The server draws the same counts with the page; this only redraws them.

/** A capped count as pages show it (chat.selectors.unread_label). */
function label(count, cap) {
  return cap && count >= cap ? `${cap - 1}+` : String(count);
}

/** Show `count` in a badge whose first child is the number, then a hidden " unread". */
function setBadge(badge, count, cap) {
  const text = badge.firstChild;
  const shown = label(count, cap);
  if (text && text.nodeType === Node.TEXT_NODE) {
    if (text.nodeValue !== shown) text.nodeValue = shown;
  } else {
    badge.prepend(document.createTextNode(shown));
  }
  badge.dataset.unread = String(count);
  badge.hidden = count <= 0;
}

function update(data) {
  if (!data || typeof data !== "object") return;
  const cap = Number(data.cap) || 0;
  let total = Number(data.total);
  const rooms = data.rooms && typeof data.rooms === "object" ? data.rooms : {};
  // The open room is being read (chat.js tells the server, which sends the counts again):
  // its messages are not counted meanwhile, unless the total stopped at the cap.
  const open = document.querySelector("#chat[data-room]")?.dataset.room;
  if (open && (!cap || total < cap)) total -= Number(rooms[open]) || 0;
  const header = document.querySelector("[data-nav-chat-unread]");
  if (header && Number.isSafeInteger(total) && total >= 0) setBadge(header, total, cap);
  for (const badge of document.querySelectorAll("[data-room-unread]")) {
    const count = Number(rooms[badge.dataset.roomUnread]) || 0;
    setBadge(badge, count, cap);
  }
}

window.addEventListener("streamsite:chat-unread", (event) => update(event.detail));
