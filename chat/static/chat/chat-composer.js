// The chat room's composer: the plain form, taken over to send over the socket. Enter
// sends, Shift+Enter adds a line; what is written shows at once as pending (chat-view.js)
// and stays in the outbox (chat-outbox.js) until the server acknowledges it.

import { newClientId } from "./chat-frames.js";

const TYPING_EVERY_MS = 3_000;

export class Composer {
  /**
   * `room` gives: view (MessageList), outbox, send(frame) (false when the socket is not
   * open) and stopped (true once the socket is closed for good: the plain form posts).
   */
  constructor(root, room) {
    this.room = room;
    this.form = root.querySelector("[data-chat-form]");
    this.input = this.form?.querySelector("textarea[name=body]");
    this.lastTypingSent = 0;
  }

  enhance() {
    if (!this.form || !this.input) return;
    const hint = this.form.querySelector("[data-composer-hint]");
    if (hint) {
      hint.hidden = false;
      const described = this.input.getAttribute("aria-describedby");
      this.input.setAttribute("aria-describedby", described ? `${described} ${hint.id}` : hint.id);
    }
    this.form.addEventListener("submit", (event) => {
      if (this.room.stopped) return; // the plain form: the server says what is wrong
      event.preventDefault();
      const body = this.input.value.trim();
      if (!body) return;
      this.queue(body, newClientId());
      this.input.value = "";
      this.input.focus();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.form.requestSubmit();
      }
    });
    this.input.addEventListener("input", () => {
      const now = Date.now();
      if (now - this.lastTypingSent < TYPING_EVERY_MS || !this.input.value.trim()) return;
      if (this.room.send({ type: "typing" })) this.lastTypingSent = now;
    });
  }

  /** Show a message at once as pending, and send it if the socket is open. */
  queue(body, clientId) {
    const entry = { clientId, body, state: "pending", retryTimer: null, item: null };
    entry.item = this.room.view.addPending(entry);
    this.room.outbox.add(entry);
    this.send(entry);
  }

  send(entry) {
    if (entry.state !== "pending" || this.room.outbox.get(entry.clientId) !== entry) return;
    this.room.view.setPendingNote(entry.item, "sending…");
    this.room.send({ type: "message.send", client_id: entry.clientId, body: entry.body });
  }
}
