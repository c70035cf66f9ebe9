// The home dashboard, live. Its rooms' unread badges are chat-unread.js'; this module keeps
// the other lists current from the events notifications.js re-dispatches on window (the
// notification stream, one per browser: no request of its own):
//
// - "streamsite:notification": a new notification goes on top of "Latest notifications";
// - "streamsite:conversation" {id, title, url, updated_at}: a conversation asked in moves to
//   the top of "Recent conversations with the assistant";
// - "streamsite:job" (jobs/events.py): a queued or running job is added to or updated in
//   "Running jobs", and one that ends shows how it ended (until the page is reloaded).
//
// Every list keeps at most data-dash-max items. User text goes in with textContent, and
// links only through safeLink. Without JavaScript the page is the same, as of its rendering.

import { ACTIVE, LABELS } from "./jobs.js";
import { safeLink } from "./notification-bell.js";

const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

function list(name) {
  return document.querySelector(`[data-dash-list="${name}"]`);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A title, linked if its URL is safe. */
function titled(title, url) {
  const href = safeLink(url);
  if (!href) return document.createTextNode(String(title ?? ""));
  const link = element("a", "", String(title ?? ""));
  link.href = href;
  return link;
}

function timeOf(iso) {
  const time = element("time", "muted", RELATIVE.format(0, "second"));
  const date = new Date(iso);
  if (!Number.isNaN(date.getTime())) {
    time.dateTime = date.toISOString();
    time.title = date.toLocaleString();
  }
  return time;
}

/** Put `item` on top of the list `name`, keep data-dash-max items, hide "nothing yet". */
function putFirst(name, item) {
  const ul = list(name);
  ul.prepend(item);
  const max = Number(ul.dataset.dashMax) || 5;
  while (ul.children.length > max) ul.lastElementChild.remove();
  const empty = document.querySelector(`[data-dash-empty="${name}"]`);
  if (empty) empty.hidden = true;
}

function notification(data) {
  const id = Number(data?.id);
  if (!list("notifications") || !Number.isSafeInteger(id)) return;
  if (list("notifications").querySelector(`[data-notification-id="${id}"]`)) return;
  const item = element("li", data.read ? "" : "is-unread");
  item.dataset.notificationId = String(id);
  item.append(titled(data.title, data.url), " ", timeOf(data.created_at));
  putFirst("notifications", item);
}

function conversation(data) {
  const id = Number(data?.id);
  if (!list("conversations") || !Number.isSafeInteger(id)) return;
  const shown = list("conversations").querySelector(`[data-conversation-id="${id}"]`);
  const since = Date.parse(data.updated_at);
  if (shown && Date.parse(shown.querySelector("time")?.dateTime) > since) return; // older news
  shown?.remove();
  const item = element("li");
  item.dataset.conversationId = String(id);
  item.append(titled(data.title, data.url), " ", timeOf(data.updated_at));
  putFirst("conversations", item);
}

function jobText(job) {
  let text = `${LABELS[job.state] ?? job.state} · ${Number(job.done) || 0}`;
  if (job.total !== null && job.total !== undefined) text += ` of ${job.total}`;
  return `${text} rows`;
}

function job(data) {
  const id = Number(data?.id);
  if (!list("jobs") || !Number.isSafeInteger(id)) return;
  const seq = Number(data.seq) || 0;
  let item = list("jobs").querySelector(`[data-job-id="${id}"]`);
  if (item && Number(item.dataset.jobSeq) >= seq) return; // a late relay of an older version
  if (!item) {
    if (!ACTIVE.has(data.state)) return; // one that ended before this page knew it
    item = element("li");
    item.dataset.jobId = String(id);
    const link = element("a", "", String(data.title || data.kind || "Job"));
    link.href = `${list("jobs").dataset.jobsUrl}#job-${id}`;
    item.append(link, " ", element("span", "muted"));
    item.lastElementChild.dataset.jobState = "";
    putFirst("jobs", item);
  }
  item.dataset.jobSeq = String(seq);
  item.querySelector("[data-job-state]").textContent = jobText(data);
}

window.addEventListener("streamsite:notification", (event) => notification(event.detail));
window.addEventListener("streamsite:conversation", (event) => conversation(event.detail));
window.addEventListener("streamsite:job", (event) => job(event.detail));
