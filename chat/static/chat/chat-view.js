// What the chat page shows: the message list, who is typing, the status (who is online:
// chat-presence.js; the assistant's answers: chat-answers.js; day separators, groups and
// the "New messages" marker: chat-timeline.js).
//
// chat.js owns the socket and the protocol; this module owns the DOM. Messages are drawn
// the way templates/chat/message.html draws them, and every piece of user text goes in
// with textContent (or a form field's value), never as markup.

import { NewMarker, keepTimesCurrent, redrawTimeline } from "./chat-timeline.js";

const TYPING_SHOWN_MS = 5000;
const FLASH_MS = 6000;
// "At the bottom" within this many pixels: a new message keeps the view pinned there.
const BOTTOM_SLACK_PX = 48;

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A plain POST form to `template` (a URL whose "/0/" is the message id), with one button. */
export function postForm(template, id, csrfToken, className, label) {
  const form = element("form", className);
  form.method = "post";
  const at = template.lastIndexOf("/0/");
  form.action = `${template.slice(0, at)}/${id}/${template.slice(at + 3)}`;
  const token = element("input");
  token.type = "hidden";
  token.name = "csrfmiddlewaretoken";
  token.value = csrfToken();
  const button = element("button", "link", label);
  button.type = "submit";
  form.append(token, button);
  return form;
}

function clockTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return { short: "", long: "" };
  return {
    short: date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false }),
    long: date.toLocaleString(),
  };
}

// The messages -----------------------------------------------------------------------------

/**
 * The list of messages: confirmed ones (with a server id) in id order, then the pending
 * ones (sent, not yet acknowledged) in the order they were written.
 */
export class MessageList {
  constructor(root, { username, deleteUrl, csrfToken }) {
    // The assistant's answers (chat-answers.js), set by the page once both exist.
    this.answers = null;
    this.list = root.querySelector("[data-chat-messages]");
    this.empty = root.querySelector("[data-chat-empty]");
    this.announcer = root.querySelector("[data-chat-announcer]");
    this.username = username;
    this.deleteUrl = deleteUrl;
    this.csrfToken = csrfToken;
    this.marker = new NewMarker(root, this.list, {
      atBottom: () => this.atBottom(),
      scrollToBottom: () => this.scrollToBottom(),
    });
    keepTimesCurrent(this.list);
  }

  /** The confirmed message items, in page order (which is id order). */
  confirmed() {
    return [...this.list.querySelectorAll(":scope > li[data-message-id]")];
  }

  ids() {
    return this.confirmed().map((item) => Number(item.dataset.messageId));
  }

  byId(id) {
    return this.list.querySelector(`:scope > li[data-message-id="${Number(id)}"]`);
  }

  byClientId(clientId) {
    for (const item of this.list.querySelectorAll(":scope > li[data-client-id]")) {
      if (item.dataset.clientId === clientId) return item;
    }
    return null;
  }

  atBottom() {
    const list = this.list;
    return list.scrollHeight - list.scrollTop - list.clientHeight <= BOTTOM_SLACK_PX;
  }

  scrollToBottom() {
    this.list.scrollTop = this.list.scrollHeight;
    this.marker.hide();
  }

  /** Redraw the day separators and groups in the reader's time zone. */
  redraw() {
    redrawTimeline(this.list);
  }

  /**
   * Run `change`, then keep the view where the reader was: pinned to the bottom if it was;
   * scrolled up, it stays put, and if `change` returns true (messages arrived below) the
   * marker says so.
   */
  keepingView(change, { older = false } = {}) {
    const pinned = this.atBottom();
    const fromBottom = this.list.scrollHeight - this.list.scrollTop;
    const arrived = change() === true;
    redrawTimeline(this.list);
    if (this.empty) this.empty.hidden = this.list.children.length > 0;
    if (pinned && !older) this.scrollToBottom();
    // Older messages went in above: the ones being read stay where they were on screen.
    else if (older) this.list.scrollTop = this.list.scrollHeight - fromBottom;
    else if (arrived) this.marker.show();
  }

  /** Put confirmed messages in their places by id; return those that were not shown yet. */
  merge(messages, { older = false, announce = false } = {}) {
    const added = [];
    this.keepingView(
      () => {
        for (const message of messages) {
          if (this.byId(message.id)) {
            if (message.deleted) this.markDeleted(message.id);
            else if (message.assistant === true) this.answers?.update(message);
            continue;
          }
          this.insert(this.item(message));
          added.push(message);
        }
        return added.length > 0;
      },
      { older },
    );
    if (announce) {
      for (const message of added) {
        if (message.deleted) continue;
        if (message.assistant === true) {
          this.announce(`The assistant is answering ${message.author.username}.`);
        } else {
          this.announce(`${message.author.username}: ${message.body}`);
        }
      }
    }
    return added;
  }

  /** Insert a confirmed item before the first item with a larger id (or any pending one). */
  insert(item) {
    const id = Number(item.dataset.messageId);
    for (const other of this.list.children) {
      if (other.classList.contains("chat-day")) continue; // redrawn after every change
      const otherId = other.dataset.messageId;
      if (otherId === undefined || Number(otherId) > id) {
        this.list.insertBefore(item, other);
        return;
      }
    }
    this.list.append(item);
  }

  /** One message, as message.html draws it. */
  item(message) {
    const item = element("li", "chat-message");
    item.id = `message-${message.id}`;
    item.dataset.messageId = String(message.id);
    item.dataset.author = message.author.username;
    if (message.client_id) item.dataset.clientId = message.client_id;
    const assistant = message.assistant === true && this.answers !== null;
    if (assistant) {
      // Its author is who asked.
      item.classList.add("is-assistant");
      item.dataset.assistant = "";
      const askedBy = element("span", "chat-asked-by", `asked by ${message.author.username}`);
      item.append(element("span", "chat-author", "assistant"), " ", askedBy);
    } else {
      item.append(element("span", "chat-author", message.author.username));
    }
    const when = clockTime(message.created_at);
    const time = element("time", "", when.short);
    time.dateTime = message.created_at;
    time.title = when.long;
    item.append(time);
    if (message.deleted) {
      item.classList.add("is-deleted");
      item.append(this.deletedNote());
    } else {
      if (assistant) this.answers.fill(item, message);
      else item.append(this.body(message.body));
      if (this.deleteUrl) item.append(this.deleteForm(message.id));
    }
    return item;
  }

  body(text) {
    const body = element("div", "chat-body", text);
    body.dataset.chatBody = "";
    return body;
  }

  deletedNote() {
    const note = element("em", "chat-deleted", "message deleted");
    note.dataset.chatDeleted = "";
    return note;
  }

  /** The moderators' plain POST form, as the server renders it. */
  deleteForm(id) {
    const form = postForm(this.deleteUrl, id, this.csrfToken, "inline chat-delete", "Delete");
    form.dataset.chatDelete = "";
    return form;
  }

  /** A moderator deleted it: it keeps its place, without its text. */
  markDeleted(id) {
    const item = this.byId(id);
    if (!item || item.classList.contains("is-deleted")) return;
    item.classList.add("is-deleted");
    const parts = "[data-chat-body], [data-chat-delete], [data-chat-stop], [data-chat-answer-status]";
    for (const node of item.querySelectorAll(parts)) node.remove();
    this.answers?.forget(id);
    item.append(this.deletedNote());
  }

  /** A message written here, shown at once while it is on its way. */
  addPending(pending) {
    const item = element("li", "chat-message is-pending");
    item.dataset.clientId = pending.clientId;
    item.dataset.author = this.username;
    item.append(element("span", "chat-author", this.username));
    item.append(this.body(pending.body));
    const status = element("span", "chat-message-status", "sending…");
    status.dataset.chatMessageStatus = "";
    item.append(status);
    this.keepingView(() => this.list.append(item));
    this.scrollToBottom(); // one's own message is always worth seeing
    return item;
  }

  /** The server has it: the pending item becomes the message, in its place by id. */
  confirm(item, message) {
    if (this.byId(message.id)) {
      // Already shown (history or the live frame came first): one copy only.
      item.remove();
      return;
    }
    this.keepingView(() => {
      const sent = this.item(message);
      sent.classList.add("is-sent");
      item.remove();
      this.insert(sent);
    });
  }

  setPendingNote(item, text) {
    const status = item.querySelector("[data-chat-message-status]");
    if (status) status.textContent = text;
  }

  /** The server refused it for good: say why, and offer to discard it. */
  fail(item, detail, onDiscard) {
    item.classList.remove("is-pending");
    item.classList.add("is-failed");
    this.setPendingNote(item, `Not sent: ${detail || "refused by the server"}`);
    if (!item.querySelector("[data-chat-discard]")) {
      const discard = element("button", "link", "Discard");
      discard.type = "button";
      discard.dataset.chatDiscard = "";
      discard.addEventListener("click", () => {
        item.remove();
        onDiscard();
      });
      item.append(discard);
    }
  }

  announce(text) {
    if (!this.announcer) return;
    const line = element("p", "", text);
    this.announcer.append(line);
    while (this.announcer.children.length > 5) this.announcer.firstElementChild.remove();
  }
}

// Around the messages ----------------------------------------------------------------------

/** "alice is typing…", for a few seconds after each typing frame. */
export class Typing {
  constructor(root) {
    this.node = root.querySelector("[data-chat-typing]");
    this.timers = new Map();
  }

  typing(username) {
    clearTimeout(this.timers.get(username));
    this.timers.set(
      username,
      setTimeout(() => this.stopped(username), TYPING_SHOWN_MS),
    );
    this.render();
  }

  stopped(username) {
    clearTimeout(this.timers.get(username));
    if (this.timers.delete(username)) this.render();
  }

  clear() {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.render();
  }

  render() {
    if (!this.node) return;
    const names = [...this.timers.keys()].sort();
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "Several people are typing…";
    this.node.textContent = text;
  }
}

/** The connection's state, for people (a line of text) and tests (data-chat-state). */
export class Status {
  constructor(root) {
    this.root = root;
    this.node = root.querySelector("[data-chat-status]");
  }

  set(state, text) {
    clearTimeout(this.flashTimer);
    this.root.dataset.chatState = state;
    if (!this.node) return;
    this.node.textContent = text;
    this.node.hidden = text === "";
    this.node.dataset.state = state;
  }

  /** A passing notice (an error the server sent back), gone after a few seconds. */
  flash(text) {
    const state = this.root.dataset.chatState || "live";
    this.set(state, text);
    this.flashTimer = setTimeout(() => this.set(state, ""), FLASH_MS);
  }
}
