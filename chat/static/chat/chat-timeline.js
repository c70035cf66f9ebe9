// How the messages are laid out as they arrive (the rules of chat/timeline.py, which
// renders the page, in the reader's time zone): a day separator where the day changes,
// the author and time shown once for consecutive messages of one author, times written
// relative to now ("5 min. ago", kept up to date; the absolute time stays in the <time>'s
// datetime and title, and is its text without JavaScript), and the "New messages" marker
// for messages that arrive below the part being read.

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

const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });
// How often the relative times are written again (they move by the minute).
const TICK_MS = 30 * 1000;

/** "now", "5 min. ago", "3 hr. ago"; a day or more ago, the clock time (its day's
 * separator above it says which day). */
export function relativeTime(date, now = new Date()) {
  const seconds = Math.round((now - date) / 1000);
  if (seconds < 45) return RELATIVE.format(0, "second");
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return RELATIVE.format(-minutes, "minute");
  const hours = Math.round(minutes / 60);
  if (hours < 24) return RELATIVE.format(-hours, "hour");
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
}

/** Write every message's time relative to `now` (the text only: datetime and title keep
 * the absolute time for screen readers and tooltips). */
export function redrawTimes(list, now = new Date()) {
  for (const time of list.querySelectorAll(":scope > li > time[datetime]")) {
    const date = new Date(time.dateTime);
    if (Number.isNaN(date.getTime())) continue;
    if (!time.title) time.title = date.toLocaleString();
    const text = relativeTime(date, now);
    if (time.textContent !== text) time.textContent = text;
  }
}

/**
 * Keep the times of `list` relative to now while the page is open: rewritten every
 * TICK_MS and when the tab is shown again; past midnight the day separators are redrawn
 * too ("Today" becomes "Yesterday").
 */
export function keepTimesCurrent(list) {
  let today = dayKey(new Date());
  const tick = () => {
    if (document.hidden) return;
    const now = new Date();
    if (dayKey(now) !== today) {
      today = dayKey(now);
      redrawTimeline(list);
    } else {
      redrawTimes(list, now);
    }
  };
  document.addEventListener("visibilitychange", tick);
  return setInterval(tick, TICK_MS);
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
  redrawTimes(list);
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
