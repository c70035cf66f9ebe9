// How the messages are laid out as they arrive (the rules of chat/timeline.py, which
// renders the page, in the reader's time zone): a day separator where the day changes,
// the author and time shown once for consecutive messages of one author, and the "New
// messages" marker for messages that arrive below the part being read.

// A message continues the previous one's group when its author wrote it this soon after.
const GROUP_WITHIN_MS = 5 * 60 * 1000;

function dayKey(date) {
  return `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`;
}

/** "Today", "Yesterday", or the date written out ("Monday 30 November 2026"). */
export function dayLabel(date, now = new Date()) {
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (dayKey(date) === dayKey(now)) return "Today";
  if (dayKey(date) === dayKey(yesterday)) return "Yesterday";
  return date.toLocaleDateString(undefined, {
    weekday: "long",
    day: "numeric",
    month: "long",
    year: "numeric",
  });
}

function createdAt(item) {
  const iso = item.querySelector(":scope > time")?.dateTime;
  const date = iso ? new Date(iso) : new Date(); // a pending message is being written now
  return Number.isNaN(date.getTime()) ? new Date() : date;
}

/** Redraw the day separators (li.chat-day) and the groups (is-continued) of the list. */
export function redrawTimeline(list) {
  for (const day of list.querySelectorAll(":scope > li.chat-day")) day.remove();
  let previous = null;
  for (const item of [...list.children]) {
    const when = createdAt(item);
    const newDay = previous === null || dayKey(when) !== dayKey(previous.when);
    if (newDay) {
      const separator = document.createElement("li");
      separator.className = "chat-day";
      const label = document.createElement("span");
      label.textContent = dayLabel(when);
      separator.append(label);
      item.before(separator);
    }
    const assistant = item.dataset.assistant !== undefined;
    const continues =
      !newDay &&
      !assistant &&
      !previous.assistant &&
      previous.author === item.dataset.author &&
      when - previous.when <= GROUP_WITHIN_MS;
    item.classList.toggle("is-continued", continues);
    previous = { when, author: item.dataset.author, assistant };
  }
}

/**
 * "New messages ↓": shown when messages arrive while the reader is scrolled up, instead of
 * moving the view; gone once they reach the bottom (scrolling, or clicking it).
 */
export class NewMarker {
  constructor(root, list, { atBottom, scrollToBottom }) {
    this.button = root.querySelector("[data-chat-new-marker]");
    this.list = list;
    this.atBottom = atBottom;
    if (!this.button) return;
    this.button.addEventListener("click", () => {
      scrollToBottom();
      this.hide();
      this.list.focus({ preventScroll: true });
    });
    list.addEventListener("scroll", () => {
      if (this.atBottom()) this.hide();
    });
  }

  show() {
    if (this.button) this.button.hidden = false;
  }

  hide() {
    if (this.button) this.button.hidden = true;
  }
}
