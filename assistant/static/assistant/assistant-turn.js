// One answer on the conversation page: its text as it streams, its status and its actions.
//
// assistant.js owns the connections and the protocol; this module owns one answer's DOM,
// drawn the way templates/assistant/answer.html draws it. All text goes in as text nodes
// (textContent, appendData), never as markup.
//
// Positions count code points (docs/protocol.md). A turn keeps what it has received
// (`received`) apart from what is on screen (`rendered`): deltas only queue text, and
// render() puts the queue on screen once per animation frame. While a Stop is on its way
// the screen is held where the user pressed it (`hold`), so the text does not run on and
// then jump back when the stopped answer's shorter `done` arrives.

export const FINAL_STATUSES = new Set(["complete", "stopped", "interrupted", "failed"]);

/** How a delta or a done fitted what the turn had: "added", "nothing" or "gap". */
export const GAP = "gap";

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The number of code points in `text` (what positions count). */
export function codePoints(text) {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

/** The UTF-16 index at which the `count`-th code point of `text` starts. */
function utf16Index(text, count) {
  let index = 0;
  let seen = 0;
  for (const char of text) {
    if (seen === count) break;
    index += char.length;
    seen += 1;
  }
  return index;
}

/** What the status line says (templates/assistant/status.html). */
export function statusText(status, error) {
  switch (status) {
    case "streaming":
      return "Answering…";
    case "stopped":
      return "Stopped.";
    case "interrupted":
      return `Interrupted: ${error || "the server stopped."}`;
    case "failed":
      return `Failed: ${error || "the assistant could not answer."}`;
    default:
      return "";
  }
}

/** What the live region says when an answer reaches `status`: "Answer complete.", … */
export function announcement(status, error) {
  if (!FINAL_STATUSES.has(status)) return "";
  if (status === "complete") return "Answer complete.";
  if (status === "stopped") return "Answer stopped.";
  const text = statusText(status, error);
  return text && `Answer ${text.charAt(0).toLowerCase()}${text.slice(1)}`;
}

export class Turn {
  /**
   * @param item the <li> of the answer (rendered by the server, or by Turn.create)
   * @param urls {stop, retry, continue}: each a function of the answer id
   * @param csrfToken a function returning the page's CSRF token (for the plain forms)
   */
  constructor(item, { urls, csrfToken }) {
    this.item = item;
    this.urls = urls;
    this.csrfToken = csrfToken;
    this.id = Number(item.dataset.answer);
    this.questionId = Number(item.dataset.question);
    this.status = item.dataset.status;
    this.error = "";
    this.received = Number(item.dataset.position) || 0;
    this.paragraph = item.querySelector("[data-answer-text]");
    this.paragraph.normalize();
    if (!this.paragraph.firstChild) this.paragraph.append(document.createTextNode(""));
    this.text = this.paragraph.firstChild;
    // The page's HTML turned any CRLF of the stored text into LF: the screen holds that
    // many code points fewer than the position says. Cuts count them off (they are rare).
    this.missing = Math.max(0, this.received - codePoints(this.text.data));
    this.rendered = this.received;
    this.queue = []; // [{text, length}] received, not yet on screen
    this.hold = null; // a Stop is on its way: show nothing beyond this position
    this.superseded = false; // a later answer to the same question exists
    this.busy = false; // an action of this turn is waiting for the server
    this.statusLine = item.querySelector("[data-answer-status]");
    this.actions = item.querySelector("[data-answer-actions]");
  }

  /** A new turn's <li> from a `turn` event (question and answer metadata). */
  static create({ meta, question }) {
    const item = element("li", "assistant-turn");
    item.id = `answer-${meta.id}`;
    item.dataset.answer = String(meta.id);
    item.dataset.question = String(question.id);
    item.dataset.status = meta.status;
    item.dataset.position = "0";
    if (meta.continues) item.dataset.continues = String(meta.continues);

    const asked = element("div", "assistant-question");
    asked.append(element("span", "assistant-who", question.author || "you"));
    const questionText = element("p", "assistant-text", question.text);
    questionText.dataset.questionText = "";
    asked.append(questionText);
    if (meta.continues) asked.append(element("p", "assistant-note", "Continuing the answer above."));

    const answer = element("div", "assistant-answer");
    const who = element("span", "assistant-who", "assistant");
    if (meta.model) who.append(" ", element("span", "assistant-model", `(${meta.model})`));
    const text = element("p", "assistant-text");
    text.dataset.answerText = "";
    text.setAttribute("aria-busy", "true");
    const status = element("p", "assistant-status");
    status.dataset.answerStatus = "";
    status.dataset.testid = "answer-status";
    const actions = element("div", "assistant-actions");
    actions.dataset.answerActions = "";
    answer.append(who, text, status, actions);
    item.append(asked, answer);
    return item;
  }

  get final() {
    return FINAL_STATUSES.has(this.status);
  }

  get streaming() {
    return this.status === "streaming";
  }

  // Text ------------------------------------------------------------------------------------

  /** A delta: `text` ends at `position`. Queue the part not already had. */
  applyDelta(position, text) {
    if (this.final || !Number.isSafeInteger(position) || typeof text !== "string") return "nothing";
    if (position <= this.received) return "nothing";
    const chars = Array.from(text);
    const start = position - chars.length;
    if (start > this.received) return GAP; // text between is missing: read it again
    const fresh = start === this.received ? text : chars.slice(this.received - start).join("");
    this.queue.push({ text: fresh, length: position - this.received });
    this.received = position;
    return "added";
  }

  /** Whether render() has something to put on screen. */
  get dirty() {
    const limit = this.hold ?? Number.POSITIVE_INFINITY;
    return this.queue.length > 0 && this.rendered < limit;
  }

  /** Put the queued text on screen (up to a held position), in one DOM write. */
  render() {
    const limit = this.hold ?? Number.POSITIVE_INFINITY;
    let out = "";
    while (this.queue.length > 0 && this.rendered < limit) {
      const piece = this.queue[0];
      const room = limit - this.rendered;
      if (piece.length <= room) {
        out += piece.text;
        this.rendered += piece.length;
        this.queue.shift();
      } else {
        const chars = Array.from(piece.text);
        out += chars.slice(0, room).join("");
        piece.text = chars.slice(room).join("");
        piece.length -= room;
        this.rendered += room;
      }
    }
    if (out) this.text.appendData(out);
  }

  /** Keep only the first `position` code points (a Stop cut the answer there). */
  cutTo(position) {
    if (position >= this.received) return;
    const keep = Math.max(0, position);
    if (keep >= this.rendered) {
      let room = keep - this.rendered;
      const kept = [];
      for (const piece of this.queue) {
        if (room <= 0) break;
        if (piece.length <= room) {
          kept.push(piece);
          room -= piece.length;
        } else {
          kept.push({ text: Array.from(piece.text).slice(0, room).join(""), length: room });
          room = 0;
        }
      }
      this.queue = kept;
    } else {
      this.queue = [];
      const onScreen = Math.max(0, keep - this.missing);
      const data = this.text.data;
      const at = utf16Index(data, onScreen);
      if (at < data.length) this.text.deleteData(at, data.length - at);
      this.missing = Math.min(this.missing, keep);
      this.rendered = keep;
    }
    this.received = keep;
  }

  // Status ----------------------------------------------------------------------------------

  /**
   * A `done`: the final status and length. Returns GAP when it announces text this page
   * never received (then it is not applied: the stream is read again), "nothing" when
   * the turn was final already, else "added".
   */
  applyDone({ status, position, error }) {
    if (!FINAL_STATUSES.has(status) || !Number.isSafeInteger(position)) return "nothing";
    if (position > this.received) return GAP;
    const changed = this.status !== status;
    this.cutTo(position);
    this.hold = null;
    this.setStatus(status, typeof error === "string" ? error : "");
    return changed ? "added" : "nothing";
  }

  setStatus(status, error = "") {
    this.status = status;
    this.error = error;
    this.item.dataset.status = status;
    this.statusLine.textContent = statusText(status, error);
    if (this.final) this.paragraph.removeAttribute("aria-busy");
    else this.paragraph.setAttribute("aria-busy", "true");
    this.updateActions();
  }

  /** The data-position the server would render now (for people and tests). */
  syncPosition() {
    this.item.dataset.position = String(this.rendered);
  }

  // Actions ---------------------------------------------------------------------------------

  /** The one action that fits the status: Stop, Retry or Continue (or none). */
  action() {
    if (this.streaming) return "stop";
    if (this.superseded) return null; // retried or continued already
    if (this.status === "failed") return "retry";
    if (this.status === "interrupted" || this.status === "stopped") return "continue";
    return null;
  }

  updateActions() {
    const action = this.action();
    const form = this.actions.querySelector("form");
    if (form && form.dataset.action === action) {
      form.querySelector("button").disabled = this.busy;
      return;
    }
    this.actions.replaceChildren();
    if (action) this.actions.append(this.form(action));
  }

  /** The plain POST form answer.html renders, which the page's client takes over. */
  form(action) {
    const label = { stop: "Stop", retry: "Retry", continue: "Continue" }[action];
    const form = element("form");
    form.method = "post";
    form.action = this.urls[action](this.id);
    form.dataset.action = action;
    form.dataset[`${action}Form`] = "";
    const token = element("input");
    token.type = "hidden";
    token.name = "csrfmiddlewaretoken";
    token.value = this.csrfToken();
    const button = element("button", "", label);
    button.type = "submit";
    button.dataset.testid = action;
    button.disabled = this.busy;
    form.append(token, button);
    return form;
  }

  setBusy(busy) {
    this.busy = busy;
    const button = this.actions.querySelector("button");
    if (button) button.disabled = busy;
  }
}
