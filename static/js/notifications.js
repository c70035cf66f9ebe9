// Live notifications: one stream per browser, shared by all its tabs.
//
// Every tab of the site and the admin renders the bell server-side; this module makes it
// live. The tabs of one browser share ONE EventSource: they elect a leader with the Web
// Locks API (the lock is held for the tab's lifetime and passes to a waiting tab when the
// leader closes), the leader opens the stream and relays every event to the other tabs
// over a BroadcastChannel. Without Web Locks or BroadcastChannel each tab opens its own.
//
// Events (notifications/streams.py): `notification` {id, title, body, url, level,
// created_at, read}, `unread` {count}, `read` {ids, up_to}, `deleted` {ids}, `job`
// (jobs/events.py), which is re-dispatched on window as "streamsite:job" for the jobs page,
// and `chat-unread` {total, rooms, cap} (chat/unread_watch.py), re-dispatched as
// "streamsite:chat-unread" for the header's Chat count and the rooms' badges
// (chat-unread.js), and `conversation` {id, title, url, updated_at} (assistant/events.py),
// re-dispatched as "streamsite:conversation". New notifications are re-dispatched as
// "streamsite:notification" too (the home dashboard, home.js).
//
// Observable state, for people and tests: <body data-notifications-state="live|connecting|
// offline|stopped" data-notifications-role="leader|follower|solo">.

import { Bell, enhanceMarkReadForms, showDeleted, showRead, showToast } from "./notification-bell.js";
import { Backoff } from "./reconnect.js";

// Notifications a tab keeps to hand to tabs that open after them (see `welcome`).
const RECENT_KEPT = 50;
const STREAM_EVENTS = [
  "notification",
  "unread",
  "read",
  "deleted",
  "job",
  "chat-unread",
  "conversation",
];
// Refusals that retrying cannot change: logged out (403), a bad id, no such endpoint.
const FINAL_STATUSES = new Set([400, 401, 403, 404]);
// live: the stream is open; connecting: (re)opening it; offline: refused, retrying later;
// stopped: refused for good (logged out).
const STATES = new Set(["live", "connecting", "offline", "stopped"]);

// The stream -------------------------------------------------------------------------------

/** One EventSource that comes back after any failure, resuming after the last id seen. */
class Stream {
  constructor(url, { lastId, onEvent, onState }) {
    this.url = url;
    this.lastId = lastId;
    this.onEvent = onEvent;
    this.onState = onState;
    this.source = null;
    this.backoff = new Backoff();
    window.addEventListener("online", () => this.backoff.hurry());
  }

  resumeUrl() {
    const url = new URL(this.url, window.location.href);
    url.searchParams.set("last_event_id", String(this.lastId()));
    return url;
  }

  open() {
    const source = new EventSource(this.resumeUrl());
    this.source = source;
    this.onState("connecting");
    source.addEventListener("open", () => {
      this.backoff.reset();
      this.onState("live");
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // Closed for good (an HTTP error, a wrong content type): the browser will not
        // retry, so we do, later and later, from the last id any tab saw.
        this.source = null;
        this.onState("offline");
        this.backoff.schedule(() => this.retry());
      } else {
        // A dropped connection: the browser retries by itself with Last-Event-ID.
        this.onState("connecting");
      }
    });
    for (const type of STREAM_EVENTS) {
      source.addEventListener(type, (event) => {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        this.onEvent(type, data);
      });
    }
  }

  /**
   * Open the stream again, unless the server refuses it for good. EventSource hides the
   * status of a refused stream, so ask once with fetch (and hang up on a 200): a page
   * whose session logged out (403) stops instead of knocking every 30 s for ever.
   */
  async retry() {
    const controller = new AbortController();
    let status = 0;
    try {
      const response = await fetch(this.resumeUrl(), {
        headers: { Accept: "text/event-stream" },
        credentials: "same-origin",
        signal: controller.signal,
      });
      status = response.status;
    } catch {
      // The network: EventSource will find out, and fail into the next retry.
    } finally {
      controller.abort();
    }
    if (FINAL_STATUSES.has(status)) {
      this.onState("stopped"); // a reload (after logging in again) starts afresh
      return;
    }
    this.open();
  }
}

// Sharing one stream between tabs ---------------------------------------------------------

class Notifications {
  constructor(bell) {
    this.bell = bell;
    const root = bell.root;
    this.streamUrl = root.dataset.streamUrl;
    // What this page was rendered with: notifications up to here are already on it.
    this.renderedId = Number(root.dataset.lastEventId) || 0;
    this.lastId = this.renderedId;
    this.seen = new Set();
    this.recent = [];
    this.chatUnread = null; // the latest `chat-unread`, for tabs that open later
    this.state = "connecting";
    this.role = null;
    this.channel = null;
    this.stream = null;
    this.name = `streamsite.notifications.${root.dataset.userId || "user"}`;
  }

  start() {
    this.setState("connecting");
    if (!navigator.locks || typeof BroadcastChannel !== "function") {
      this.lead("solo");
      return;
    }
    this.channel = new BroadcastChannel(this.name);
    this.channel.addEventListener("message", (event) => this.receive(event.data));
    this.setRole("follower");
    this.post({ type: "hello", lastId: this.lastId });
    // Held until the tab closes: the promise returned never settles.
    navigator.locks
      .request(this.name, () => {
        this.lead("leader");
        return new Promise(() => {});
      })
      .catch(() => this.lead("solo"));
    window.addEventListener("pagehide", () => {
      // The lock passes to another tab, which opens a stream: until then, not live.
      if (this.role === "leader") this.post({ type: "state", state: "connecting" });
    });
  }

  /** Become the tab that owns the stream (`leader`), or a tab alone with its own (`solo`). */
  lead(role) {
    if (this.stream) return;
    this.setRole(role);
    this.stream = new Stream(this.streamUrl, {
      lastId: () => this.lastId,
      onEvent: (type, data) => {
        this.apply(type, data);
        this.post({ type: "event", event: type, data });
      },
      onState: (state) => {
        this.setState(state);
        this.post({ type: "state", state });
      },
    });
    this.stream.open();
  }

  /** A message from another tab of this browser. */
  receive(message) {
    if (!message || typeof message !== "object") return;
    switch (message.type) {
      case "hello":
        // A tab just opened: tell it how things stand and what it may have missed.
        if (this.role === "leader") {
          const after = Number(message.lastId) || 0;
          this.post({
            type: "welcome",
            state: this.state,
            unread: this.bell.unread,
            chatUnread: this.chatUnread,
            recent: this.recent.filter((notification) => notification.id > after),
          });
        }
        break;
      case "welcome":
        if (this.role !== "follower") break;
        for (const notification of message.recent || []) this.apply("notification", notification);
        this.bell.setUnread(message.unread);
        if (message.chatUnread) this.apply("chat-unread", message.chatUnread);
        this.setState(message.state);
        break;
      case "event":
        if (this.role === "follower") this.apply(message.event, message.data);
        break;
      case "state":
        if (this.role === "follower") this.setState(message.state);
        break;
      default:
        break;
    }
  }

  /** Show one event from the stream (ours or the leader's). */
  apply(type, data) {
    if (!data || typeof data !== "object") return;
    if (type === "unread") {
      this.bell.setUnread(data.count);
    } else if (type === "read") {
      showRead(data);
    } else if (type === "deleted") {
      showDeleted(data);
    } else if (type === "job") {
      window.dispatchEvent(new CustomEvent("streamsite:job", { detail: data }));
    } else if (type === "conversation") {
      window.dispatchEvent(new CustomEvent("streamsite:conversation", { detail: data }));
    } else if (type === "chat-unread") {
      this.chatUnread = data; // handed to tabs that open later (``welcome``)
      window.dispatchEvent(new CustomEvent("streamsite:chat-unread", { detail: data }));
    } else if (type === "notification") {
      const id = Number(data.id);
      if (!Number.isSafeInteger(id) || id <= 0) return;
      this.lastId = Math.max(this.lastId, id);
      // Already on the page (rendered, or relayed twice after a change of leader).
      if (id <= this.renderedId || this.seen.has(id)) return;
      this.seen.add(id);
      const notification = { ...data, id };
      this.recent.push(notification);
      if (this.recent.length > RECENT_KEPT) this.recent.shift();
      this.bell.prepend(notification);
      window.dispatchEvent(new CustomEvent("streamsite:notification", { detail: notification }));
      if (!notification.read) showToast(notification);
    }
  }

  post(message) {
    if (this.channel) this.channel.postMessage(message);
  }

  setState(state) {
    if (!STATES.has(state)) return;
    this.state = state;
    document.body.dataset.notificationsState = state;
  }

  setRole(role) {
    this.role = role;
    document.body.dataset.notificationsRole = role;
  }
}

// Start ------------------------------------------------------------------------------------

const root = document.querySelector("[data-notification-bell]");
if (root) {
  const bell = new Bell(root);
  enhanceMarkReadForms(bell);
  new Notifications(bell).start();
}
