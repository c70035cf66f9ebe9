// A chat room, live: one WebSocket per page (protocol: docs/protocol.md, "chat").
//
// The server renders the room (templates/chat/room.html) so it reads and posts without
// JavaScript; this module takes over the page. It keeps one socket open (reconnecting with
// backoff, resuming after the last message shown), sends what is written here over it
// (shown at once as "sending…", resent with the same client_id until the server
// acknowledges it), and shows live messages, deletions, presence and typing. The composer
// is chat-composer.js', the "Load older messages" button chat-older.js'.
//
// Observable state, for people and tests: <div id="chat" data-chat-state="connecting|live|
// offline|stopped">, and every message written here is "is-pending", then "is-sent" or
// "is-failed".

import { Backoff } from "../js/reconnect.js";
import { Outbox } from "./chat-outbox.js";
import { Answers } from "./chat-answers.js";
import { Composer } from "./chat-composer.js";
import { isMessage, isNames, isPresence } from "./chat-frames.js";
import { OlderMessages } from "./chat-older.js";
import { Presence } from "./chat-presence.js";
import { MessageList, Status, Typing } from "./chat-view.js";

const PING_EVERY_MS = 25_000;
const PONG_WITHIN_MS = 10_000;
// Closes that retrying cannot change: say why and stop.
const FINAL_CLOSES = new Map([
  [4401, "You are logged out. Log in again to keep chatting."],
  [4403, "You no longer have access to this room."],
  [4404, "This room no longer exists."],
]);
// Errors that answer a message.send and will not go away by sending it again.
const FINAL_SEND_ERRORS = new Set(["too_long", "invalid", "forbidden"]);

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return "";
}

// The room ---------------------------------------------------------------------------------

class ChatRoom {
  constructor(root) {
    this.root = root;
    const data = root.dataset;
    this.room = data.room;
    this.username = data.username;
    this.wsPath = data.wsPath;
    const form = root.querySelector("[data-chat-form]");
    this.view = new MessageList(root, {
      username: this.username,
      deleteUrl: data.canModerate === "true" ? data.deleteUrl || "" : "",
      csrfToken: () => cookie("csrftoken") || form?.querySelector("[name=csrfmiddlewaretoken]")?.value || "",
    });
    this.answers = new Answers(this.view, {
      username: this.username,
      canModerate: data.canModerate === "true",
      stopUrl: data.stopUrl || "",
      csrfToken: this.view.csrfToken,
      onStop: (id, position) => this.send({ type: "message.stop", id, position }),
    });
    this.view.answers = this.answers;
    this.presence = new Presence(document, {
      onMore: (after) => this.send({ type: "presence.more", after }),
    });
    this.typing = new Typing(root);
    this.status = new Status(root);
    this.outbox = new Outbox(this.room);
    this.backoff = new Backoff();
    this.composer = new Composer(root, this);
    this.older = new OlderMessages(root, this);

    // The highest message id shown: the page's own messages count.
    this.lastSeenId = Math.max(Number(data.lastId) || 0, ...this.view.ids());
    this.hasOlder = root.querySelector("[data-chat-older]") !== null;
    this.connectedOnce = false;
    this.stopped = false;
    this.socket = null;
    this.initialHistory = false; // this socket's first history frame has arrived
    this.olderRequested = false; // a "history" request is waiting for its answer
    this.pingTimer = null;
    this.pongTimer = null;
    this.readTimer = null;
    this.readSent = 0;
  }

  start() {
    this.answers.adopt();
    this.older.enhance();
    this.composer.enhance();
    for (const { clientId, body } of this.outbox.restore()) this.composer.queue(body, clientId);
    this.view.redraw();
    this.view.scrollToBottom();
    window.addEventListener("online", () => this.backoff.hurry());
    document.addEventListener("visibilitychange", () => this.scheduleRead());
    this.connect();
  }

  // The socket ------------------------------------------------------------------------------

  url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}${this.wsPath}`;
  }

  connect() {
    if (this.stopped) return;
    this.status.set("connecting", this.connectedOnce ? "Reconnecting…" : "Connecting…");
    const socket = new WebSocket(this.url());
    this.socket = socket;
    this.initialHistory = false;
    this.olderRequested = false;
    socket.addEventListener("open", () => this.opened(socket));
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame === "object") this.receive(frame);
    });
    socket.addEventListener("close", (event) => this.closed(socket, event.code));
  }

  opened(socket) {
    if (socket !== this.socket) return;
    this.backoff.reset();
    this.status.set("live", "");
    // Only a REconnect may have missed something: the first history frame covers the rest.
    // Answers still being written come again from the resume (or history) with their text.
    if (this.connectedOnce) {
      this.send({ type: "resume", after: this.answers.resumeAfter(this.lastSeenId) });
    }
    this.connectedOnce = true;
    for (const entry of this.outbox.pending()) this.composer.send(entry);
    this.startHeartbeat();
    this.older.update();
  }

  closed(socket, code) {
    if (socket !== this.socket) return; // a socket already given up on (no pong)
    this.socket = null;
    this.stopHeartbeat();
    this.typing.clear();
    this.older.update();
    const reason = FINAL_CLOSES.get(code);
    if (reason) {
      this.stop(reason);
      return;
    }
    const delay = this.backoff.schedule(() => this.connect());
    const seconds = Math.max(1, Math.round(delay / 1000));
    this.status.set(
      "offline",
      delay >= 0 ? `Offline. Reconnecting in ${seconds} s…` : "Offline. Reconnecting…",
    );
  }

  /** Closed for good: no more retries; the plain form posts to the server again. */
  stop(reason) {
    this.stopped = true;
    this.backoff.cancel();
    this.stopHeartbeat();
    this.status.set("stopped", reason);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close();
  }

  send(frame) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.pingTimer = setInterval(() => {
      if (!this.send({ type: "ping" }) || this.pongTimer !== null) return;
      this.pongTimer = setTimeout(() => this.noPong(), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  stopHeartbeat() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.pingTimer = null;
    this.pongTimer = null;
  }

  /** The server went quiet: a closing handshake could take minutes, so go on without it. */
  noPong() {
    this.pongTimer = null;
    const socket = this.socket;
    if (!socket) return;
    this.closed(socket, 1006);
    socket.close(4000, "no pong");
  }

  // Frames from the server ----------------------------------------------------------------------

  receive(frame) {
    switch (frame.type) {
      case "presence":
      case "presence.page":
        if (isNames(frame.online) && isPresence(frame)) {
          if (frame.type === "presence") this.presence.snapshot(frame);
          else if (typeof frame.after === "string") this.presence.page(frame);
        }
        break;
      case "presence.delta":
        if (isNames(frame.joined) && isNames(frame.left) && isPresence(frame)) {
          this.presence.delta(frame);
        }
        break;
      case "history":
        this.history(frame);
        break;
      case "message":
        if (isMessage(frame.message)) this.message(frame.message);
        break;
      case "ack":
        this.ack(frame);
        break;
      case "typing":
        if (typeof frame.user === "string" && frame.user !== this.username) {
          this.typing.typing(frame.user);
        }
        break;
      case "message.deleted":
        if (Number.isSafeInteger(frame.id)) this.view.markDeleted(frame.id);
        break;
      case "message.delta":
      case "message.done":
        if (Number.isSafeInteger(frame.id) && Number.isSafeInteger(frame.position)) {
          if (frame.type === "message.delta") this.answers.delta(frame);
          else this.answers.done(frame);
        }
        break;
      case "pong":
        clearTimeout(this.pongTimer);
        this.pongTimer = null;
        break;
      case "error":
        this.error(frame);
        break;
      default:
        break;
    }
  }

  history(frame) {
    const messages = Array.isArray(frame.messages) ? frame.messages.filter(isMessage) : [];
    const older = this.initialHistory && this.olderRequested;
    if (older) this.olderRequested = false;
    const oldestShown = this.view.ids()[0];
    // Ours, sent before a drop and stored, whose ack never came: now they are confirmed.
    for (const message of messages) this.confirmOwn(message);
    this.view.merge(messages, { older });
    if (older || oldestShown === undefined || (messages.length && messages[0].id <= oldestShown)) {
      // The answer reaches back to (or past) the oldest message shown: it knows.
      this.hasOlder = frame.has_more === true;
    }
    this.initialHistory = true;
    this.seen(messages);
    this.older.update();
  }

  message(message) {
    this.typing.stopped(message.author.username);
    this.confirmOwn(message);
    this.view.merge([message], { announce: true });
    this.seen([message]);
  }

  /** A message of ours that is still pending here: it has been sent after all. */
  confirmOwn(message) {
    if (message.author.username !== this.username || typeof message.client_id !== "string") return;
    const entry = this.outbox.get(message.client_id);
    if (!entry) return;
    this.outbox.remove(entry.clientId);
    this.view.confirm(entry.item, message);
  }

  ack(frame) {
    if (typeof frame.client_id !== "string" || !Number.isSafeInteger(frame.id)) return;
    const entry = this.outbox.get(frame.client_id);
    if (!entry) return; // its message frame came first, or an ack of a resend
    this.outbox.remove(entry.clientId);
    this.view.confirm(entry.item, {
      id: frame.id,
      client_id: entry.clientId,
      author: { username: this.username },
      body: entry.body,
      created_at: new Date().toISOString(),
    });
    this.seen([{ id: frame.id }]);
  }

  error(frame) {
    const detail = typeof frame.detail === "string" ? frame.detail : "";
    if (frame.code === "assistant_unavailable" && Number.isSafeInteger(frame.id)) {
      this.answers.unavailable(frame.id, detail); // our message is stored; only no answer
      return;
    }
    const entry = typeof frame.client_id === "string" ? this.outbox.get(frame.client_id) : null;
    if (!entry) {
      // Not about a message of ours (a typing, history or read frame): say so, go on.
      if (frame.code === "rate_limited" && this.olderRequested) {
        this.olderRequested = false; // refused, not queued: the button may ask again
        this.older.update();
      }
      if (detail) this.status.flash(detail);
      return;
    }
    if (frame.code === "rate_limited") {
      const seconds = Number(frame.retry_after) > 0 ? Number(frame.retry_after) : 1;
      this.view.setPendingNote(entry.item, `sending… (slow down: retrying in ${Math.ceil(seconds)} s)`);
      clearTimeout(entry.retryTimer);
      // Not sent now (offline)? The next connect sends every pending message anyway.
      entry.retryTimer = setTimeout(() => this.composer.send(entry), seconds * 1000);
    } else if (FINAL_SEND_ERRORS.has(frame.code)) {
      entry.state = "failed";
      this.outbox.save();
      this.view.fail(entry.item, detail, () => this.outbox.remove(entry.clientId));
    }
  }

  /** Messages are on the page: remember the newest, and tell the server we read them. */
  seen(messages) {
    for (const message of messages) this.lastSeenId = Math.max(this.lastSeenId, message.id);
    this.scheduleRead();
  }

  scheduleRead() {
    if (document.visibilityState !== "visible" || this.readSent >= this.lastSeenId) return;
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => {
      if (this.lastSeenId > this.readSent && this.send({ type: "read", up_to: this.lastSeenId })) {
        this.readSent = this.lastSeenId;
      }
    }, 1000);
  }
}

// Start --------------------------------------------------------------------------------------

const root = document.getElementById("chat");
if (root?.dataset.wsPath) new ChatRoom(root).start();
