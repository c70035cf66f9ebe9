// The assistant's answers in a chat room, as they are written (docs/protocol.md, "chat").
//
// An answer is a message of the room with "assistant": true: drawn as
// templates/chat/message.html draws it ("assistant, asked by alice"), its text growing
// with each message.delta and settled by message.done. Every piece of text goes in with
// textContent. Positions count code points, as the server does: text is measured and cut
// with Array.from, never String.length (which counts UTF-16 units, two for an emoji).
//
// Frames change the state at once; the page is redrawn at most once per animation frame,
// however many deltas arrived in between.

import { element, postForm } from "./chat-view.js";

const STREAMING = "streaming";

function codePoints(text) {
  return Array.from(text).length;
}

function statusText(state) {
  if (state.status === STREAMING) return "writing…";
  if (state.status === "stopped") return "stopped";
  if (state.status === "failed" || state.status === "interrupted") {
    return state.error ? `${state.status}: ${state.error}` : state.status;
  }
  return "";
}

export class Answers {
  /**
   * `view` is the page's MessageList; `onStop(id, position)` sends a message.stop and
   * returns whether it could (when it cannot, the plain form posts instead).
   */
  constructor(view, { username, canModerate, stopUrl, csrfToken, onStop }) {
    this.view = view;
    this.username = username;
    this.canModerate = canModerate;
    this.stopUrl = stopUrl;
    this.csrfToken = csrfToken;
    this.onStop = onStop;
    this.states = new Map(); // message id -> {text, position, status, error, shown}
    this.dirty = new Set();
    this.frame = 0;
  }

  /** Take over the answers the server rendered into the page. */
  adopt() {
    const rendered = this.view.list.querySelectorAll(":scope > li[data-assistant][data-status]");
    for (const item of rendered) {
      const id = Number(item.dataset.messageId);
      const text = item.querySelector("[data-chat-body]")?.textContent ?? "";
      const position = Number(item.dataset.position) || 0;
      this.states.set(id, {
        text,
        position,
        status: item.dataset.status,
        error: null,
        shown: position,
      });
      const form = item.querySelector("[data-chat-stop]");
      if (form) this.enhanceStop(form, id);
    }
  }

  /** The id below which a reconnected socket must resume so answers still being written
   * come again with their text so far (their message may be older than the last shown). */
  resumeAfter(lastSeenId) {
    let after = lastSeenId;
    for (const [id, state] of this.states) {
      if (state.status === STREAMING) after = Math.min(after, id - 1);
    }
    return after;
  }

  /** Append an answer's body, status and Stop button to its new `item` (MessageList.item). */
  fill(item, message) {
    const state = {
      text: message.body,
      position: Number(message.position) || 0,
      status: typeof message.status === "string" ? message.status : "failed",
      error: typeof message.error === "string" ? message.error : null,
      shown: 0,
    };
    this.states.set(message.id, state);
    const body = element("div", "chat-body", state.text);
    body.dataset.chatBody = "";
    const status = element("p", "chat-answer-status", statusText(state));
    status.dataset.chatAnswerStatus = "";
    item.append(body, status);
    item.dataset.status = state.status;
    item.dataset.position = String(state.position);
    state.shown = state.position;
    const mayStop = message.author.username === this.username || this.canModerate;
    if (state.status === STREAMING && mayStop) {
      const form = postForm(this.stopUrl, message.id, this.csrfToken, "inline chat-stop", "Stop");
      form.dataset.chatStop = "";
      this.enhanceStop(form, message.id);
      item.append(form);
    }
  }

  /** A message frame for an answer already shown (history, resume): a newer state wins. */
  update(message) {
    const state = this.states.get(message.id);
    const position = Number(message.position) || 0;
    if (state && message.status === STREAMING && position <= state.position) return;
    this.states.set(message.id, {
      text: message.body,
      position,
      status: message.status,
      error: typeof message.error === "string" ? message.error : null,
      shown: state ? state.shown : 0,
    });
    this.changed(message.id);
  }

  delta(frame) {
    const state = this.states.get(frame.id);
    if (!state || state.status !== STREAMING || typeof frame.text !== "string") return;
    const start = frame.position - codePoints(frame.text);
    // The server sends each piece once, where this page is; anything else is stale.
    if (start > state.position || frame.position <= state.position) return;
    const overlap = state.position - start;
    state.text += overlap > 0 ? Array.from(frame.text).slice(overlap).join("") : frame.text;
    state.position = frame.position;
    this.changed(frame.id);
  }

  done(frame) {
    const state = this.states.get(frame.id);
    if (!state || typeof frame.status !== "string") return;
    if (frame.position < state.position) {
      // A Stop keeps the text the stopping page had shown: cut ours there.
      state.text = Array.from(state.text).slice(0, frame.position).join("");
      state.position = frame.position;
    }
    state.status = frame.status;
    state.error = typeof frame.error === "string" ? frame.error : null;
    this.changed(frame.id);
    if (frame.status === "complete") {
      this.view.announce(`assistant: ${Array.from(state.text).slice(0, 300).join("")}`);
    }
  }

  forget(id) {
    this.states.delete(id);
    this.dirty.delete(id);
  }

  /** The assistant will not answer this message of ours: say why, under it. */
  unavailable(id, detail) {
    const item = this.view.byId(id);
    if (!item || item.querySelector("[data-chat-unavailable]")) return;
    const note = element("p", "chat-answer-status", `The assistant did not answer: ${detail}`);
    note.dataset.chatUnavailable = "";
    this.view.keepingView(() => item.append(note));
  }

  enhanceStop(form, id) {
    form.addEventListener("submit", (event) => {
      const state = this.states.get(id);
      // The position the reader has seen, not what arrived since the last redraw.
      if (!this.onStop(id, state ? state.shown : null)) return; // offline: the form posts
      event.preventDefault();
      const button = form.querySelector("button");
      button.disabled = true;
      button.textContent = "Stopping…";
    });
  }

  changed(id) {
    this.dirty.add(id);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  render() {
    this.frame = 0;
    const dirty = [...this.dirty];
    this.dirty.clear();
    this.view.keepingView(() => {
      for (const id of dirty) {
        const state = this.states.get(id);
        const item = this.view.byId(id);
        if (!state || !item || item.classList.contains("is-deleted")) continue;
        const body = item.querySelector("[data-chat-body]");
        const status = item.querySelector("[data-chat-answer-status]");
        if (body) body.textContent = state.text;
        if (status) status.textContent = statusText(state);
        item.dataset.status = state.status;
        item.dataset.position = String(state.position);
        state.shown = state.position;
        if (state.status !== STREAMING) item.querySelector("[data-chat-stop]")?.remove();
      }
    });
  }
}
