// The question box of a conversation page, and the notice above it.
//
// Takes over the page's plain form ([data-assistant-form], which posts to .../ask without
// JavaScript): Enter sends, Shift+Enter starts a new line; the question goes as JSON to the
// ask URL with a client_id, and the answer's events, read from the response's own stream,
// go to `onEvent(type, data)`. The client_id is fresh for each question, and the same one
// when the same text is sent again after a failure, so a request that did reach the server
// stores nothing twice.

import { newClientId, post, readJsonEvents, refusal } from "./assistant-api.js";

/** A refused request or a lost connection, said in words (and a link, for a 409). */
export class Notice {
  constructor(node) {
    this.node = node;
  }

  show({ text, link }) {
    const parts = [text];
    if (link) {
      const anchor = document.createElement("a");
      anchor.href = link.href;
      anchor.textContent = link.text;
      parts.push(" ", anchor);
    }
    this.node.replaceChildren(...parts);
    this.node.hidden = false;
  }

  clear() {
    this.node.replaceChildren();
    this.node.hidden = true;
  }
}

export class Composer {
  constructor(form, { askUrl, csrfToken, notice, onEvent }) {
    this.form = form;
    this.input = form.querySelector("textarea[name=prompt]");
    this.button = form.querySelector("button[type=submit]");
    this.askUrl = askUrl;
    this.csrfToken = csrfToken;
    this.notice = notice;
    this.onEvent = onEvent;
    this.asking = false;
    this.lastAttempt = null; // {prompt, clientId} of a question that may not have arrived
  }

  start() {
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.ask();
    });
    this.input.addEventListener("keydown", (event) => {
      // Not while an input method composes a character: its Enter confirms the character.
      if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
      event.preventDefault();
      this.form.requestSubmit(); // the form's own checks (required) still apply
    });
    const hint = this.form.querySelector("[data-assistant-hint]");
    if (hint) hint.hidden = false; // true only now that Enter sends
  }

  async ask() {
    const prompt = this.input.value.trim();
    if (this.asking || !prompt) return;
    const clientId = this.lastAttempt?.prompt === prompt ? this.lastAttempt.clientId : newClientId();
    this.lastAttempt = { prompt, clientId };
    this.setAsking(true);
    this.notice.clear();
    let response;
    try {
      response = await post(this.askUrl, {
        csrfToken: this.csrfToken(),
        json: { prompt, client_id: clientId },
        accept: "text/event-stream",
      });
    } catch {
      this.setAsking(false);
      this.notice.show({ text: "Could not reach the server. Check the connection and send again." });
      return;
    }
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || !type.startsWith("text/event-stream")) {
      this.setAsking(false);
      this.notice.show(await refusal(response));
      return;
    }
    this.lastAttempt = null;
    this.input.value = "";
    this.setAsking(false);
    try {
      for await (const { type, data } of readJsonEvents(response)) this.onEvent(type, data);
    } catch {
      // The connection broke: the conversation stream carries the same answer.
    }
  }

  setAsking(asking) {
    this.asking = asking;
    this.button.disabled = asking;
    this.form.setAttribute("aria-busy", String(asking));
  }
}
