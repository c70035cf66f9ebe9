// A conversation with the assistant, live (protocol: docs/protocol.md, "Assistant").
//
// The server renders the conversation (templates/assistant/conversation.html) so it reads
// and posts without JavaScript; this module takes the page over:
//
// - it follows the conversation's event stream (assistant-api.js' Follower), so answers
//   asked from other tabs, and answers still streaming when the page loaded, grow live;
// - its question box (assistant-composer.js) asks with a JSON POST and hands the events
//   of the POST's own stream (the new answer) to the same merge;
// - Stop, Retry and Continue become JSON requests.
//
// Two streams can carry the same answer, so every event is merged by position: a delta
// ending at or before what the page has adds nothing, one that overlaps adds only its new
// tail, a `done` with a smaller position cuts the text back (a Stop). A delta or done that
// would leave a hole makes the conversation stream read again from the database.
//
// Resuming: the stream is reopened with ?after=<answer>:<position> of the earliest answer
// it gave that is still streaming here (else the newest one it gave), not with the last
// event id. The two differ when two answers of one conversation stream at once: resuming
// after the last event (of the later answer) would skip the rest of the earlier one.
//
// Text goes on screen once per animation frame (assistant-turn.js), and only as text.
//
// Observable state, for people and tests: <div id="assistant" data-assistant-state=
// "connecting|live|offline|stopped">; each answer's <li data-status data-position>.

import { Follower, post, refusal } from "./assistant-api.js";
import { Composer, Notice } from "./assistant-composer.js";
import { GAP, Turn, announcement } from "./assistant-turn.js";

// "At the bottom" within this many pixels: growing text keeps the view pinned there.
const BOTTOM_SLACK_PX = 48;
const STREAM_EVENTS = new Set(["turn", "delta", "done"]);

/** `(id) => url` from a URL rendered for answer 0 (".../answers/0/stop"). */
function answerUrl(template) {
  const at = template.lastIndexOf("/0/");
  return (id) => `${template.slice(0, at)}/${Number(id)}/${template.slice(at + 3)}`;
}

function parseCursor(raw) {
  const match = /^(\d+):(\d+)$/.exec(raw || "");
  return match ? { answer: Number(match[1]), position: Number(match[2]) } : null;
}

function isTurnEvent(data) {
  const { answer: meta, question } = data;
  return (
    meta !== null &&
    typeof meta === "object" &&
    Number.isSafeInteger(meta.id) &&
    typeof meta.status === "string" &&
    question !== null &&
    typeof question === "object" &&
    Number.isSafeInteger(question.id) &&
    typeof question.text === "string"
  );
}

class Conversation {
  constructor(root) {
    this.root = root;
    const data = root.dataset;
    this.list = root.querySelector("[data-assistant-turns]");
    this.empty = root.querySelector("[data-assistant-empty]");
    this.form = root.querySelector("[data-assistant-form]");
    this.status = root.querySelector("[data-assistant-status]");
    this.notice = new Notice(root.querySelector("[data-assistant-notice]"));
    this.announcer = root.querySelector("[data-assistant-announcer]");
    this.urls = {
      stop: answerUrl(data.stopUrl),
      retry: answerUrl(data.retryUrl),
      continue: answerUrl(data.continueUrl),
    };
    this.turns = new Map();
    for (const item of this.list.querySelectorAll(":scope > li[data-answer]")) this.adopt(item);
    this.markSuperseded();
    // The newest answer the conversation stream has given (the page's cursor, to start).
    this.followed = parseCursor(data.cursor)?.answer ?? 0;
    this.dirty = new Set();
    this.frame = null;
    this.announceTimer = null;
    this.composer = new Composer(this.form, {
      askUrl: data.askUrl,
      csrfToken: () => this.csrfToken(),
      notice: this.notice,
      onEvent: (type, event) => this.receive(type, event, "ask"),
    });
    this.follower = new Follower(data.streamUrl, {
      cursor: () => this.cursor(),
      onEvent: (type, event) => this.receive(type, event, "stream"),
      onState: (state, text) => this.setState(state, text),
    });
  }

  start() {
    this.composer.start();
    this.list.addEventListener("submit", (event) => this.takeAction(event));
    if (!window.location.hash) this.scrollToBottom();
    this.follower.start();
  }

  csrfToken() {
    return this.form.querySelector("[name=csrfmiddlewaretoken]")?.value || "";
  }

  // Turns -----------------------------------------------------------------------------------

  adopt(item) {
    const turn = new Turn(item, { urls: this.urls, csrfToken: () => this.csrfToken() });
    this.turns.set(turn.id, turn);
    return turn;
  }

  /** A `turn` event: show the question and its (empty) answer in their place by id. */
  addTurn(data) {
    if (!isTurnEvent(data)) return null;
    const known = this.turns.get(data.answer.id);
    if (known) return known;
    const item = Turn.create({ meta: data.answer, question: data.question });
    this.keepingView(() => {
      const later = [...this.list.children].find((other) => Number(other.dataset.answer) > data.answer.id);
      this.list.insertBefore(item, later || null);
    });
    const turn = this.adopt(item);
    turn.setStatus(data.answer.status);
    this.markSuperseded();
    if (this.empty) this.empty.hidden = true;
    return turn;
  }

  /** Answers retried or continued since: they offer no Retry or Continue of their own. */
  markSuperseded() {
    const newest = new Map();
    for (const turn of this.turns.values()) {
      newest.set(turn.questionId, Math.max(newest.get(turn.questionId) ?? 0, turn.id));
    }
    for (const turn of this.turns.values()) {
      const superseded = turn.id < newest.get(turn.questionId);
      if (superseded !== turn.superseded || !turn.actions.querySelector("[data-action]")) {
        turn.superseded = superseded;
        turn.updateActions();
      }
    }
  }

  // Events ----------------------------------------------------------------------------------

  /** One event from the conversation stream (`source` "stream") or an ask's ("ask"). */
  receive(type, data, source) {
    if (type === "error") {
      this.notice.show({ text: `The answer stream failed: ${String(data.error ?? data.message ?? "")}` });
      return;
    }
    if (!STREAM_EVENTS.has(type)) return;
    let turn;
    if (type === "turn") {
      turn = this.addTurn(data);
      if (turn && source === "ask") this.scrollToBottom(); // one's own question
    } else {
      turn = this.turns.get(data.answer);
      const fit = !turn
        ? GAP // its turn never reached us
        : type === "delta"
          ? turn.applyDelta(data.position, data.text)
          : turn.applyDone(data);
      if (fit === GAP) {
        this.follower.resync();
        return;
      }
      if (type === "delta" && fit === "added") this.scheduleRender(turn);
      if (type === "done") this.finished(turn, fit === "added");
    }
    if (turn && source === "stream") this.followed = Math.max(this.followed, turn.id);
  }

  finished(turn, changed) {
    this.scheduleRender(turn);
    if (changed) this.announce(announcement(turn.status, turn.error));
  }

  /** Where the conversation stream resumes (see the module comment). */
  cursor() {
    let pick = this.turns.get(this.followed);
    if (!pick) return ""; // nothing given yet (or not here): the whole conversation
    for (const turn of this.turns.values()) {
      if (!turn.final && turn.id < pick.id) pick = turn;
    }
    return `${pick.id}:${pick.received}`;
  }

  // Rendering -------------------------------------------------------------------------------

  scheduleRender(turn) {
    this.dirty.add(turn);
    if (this.frame === null) this.frame = requestAnimationFrame(() => this.renderNow());
  }

  /** Put every queued text on screen now (each frame, and before a Stop reads the position). */
  renderNow() {
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.frame = null;
    const turns = [...this.dirty];
    this.dirty.clear();
    this.keepingView(() => {
      for (const turn of turns) {
        turn.render();
        turn.syncPosition();
      }
    });
  }

  atBottom() {
    const list = this.list;
    return list.scrollHeight - list.scrollTop - list.clientHeight <= BOTTOM_SLACK_PX;
  }

  scrollToBottom() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  /** Run `change`; if the reader was at the bottom, keep them there. */
  keepingView(change) {
    const pinned = this.atBottom();
    change();
    if (pinned) this.scrollToBottom();
  }

  // Stop, Retry, Continue -------------------------------------------------------------------

  takeAction(event) {
    const form = event.target.closest("form[data-action]");
    const turn = this.turns.get(Number(form?.closest("li[data-answer]")?.dataset.answer));
    if (!form || !turn) return; // not ours: let it post
    event.preventDefault();
    if (turn.busy) return;
    if (form.dataset.action === "stop") this.stop(turn, form);
    else this.again(turn, form);
  }

  /** Stop where the user is reading: the server cuts the answer at the shown position. */
  async stop(turn, form) {
    if (!turn.streaming) return;
    this.renderNow();
    const position = turn.rendered;
    turn.hold = position; // show nothing more while the Stop is on its way
    turn.setBusy(true);
    this.notice.clear();
    let response;
    try {
      response = await post(form.action, { csrfToken: this.csrfToken(), json: { position } });
    } catch {
      response = null;
    }
    turn.setBusy(false);
    let body = null;
    if (response?.ok) {
      try {
        body = await response.json();
      } catch {
        body = null;
      }
    }
    if (body && Number.isSafeInteger(body.position) && body.position <= turn.received) {
      // The same as the `done` the streams bring: whichever comes first applies it.
      this.finished(turn, turn.applyDone({ status: body.status, position: body.position }) === "added");
      return;
    }
    // Not stopped, or it had finished first (its `done` brings the rest): show it all.
    turn.hold = null;
    this.scheduleRender(turn);
    if (!response) this.notice.show({ text: "Could not reach the server to stop the answer. Try again." });
    else if (!response.ok) this.notice.show(await refusal(response));
  }

  /** Retry (failed) or Continue (interrupted, stopped): a new answer, which the stream brings. */
  async again(turn, form) {
    const action = form.dataset.action;
    turn.setBusy(true);
    this.notice.clear();
    let response;
    try {
      response = await post(form.action, { csrfToken: this.csrfToken(), form });
    } catch {
      response = null;
    }
    turn.setBusy(false);
    if (response?.status === 201) {
      turn.superseded = true;
      turn.updateActions();
      this.announce(action === "retry" ? "Answering again." : "Continuing the answer.");
    } else if (response) {
      this.notice.show(await refusal(response));
    } else {
      this.notice.show({ text: "Could not reach the server. Try again." });
    }
  }

  // What the page says ----------------------------------------------------------------------

  setState(state, text) {
    this.root.dataset.assistantState = state;
    this.status.textContent = text;
    this.status.hidden = text === "";
    this.status.dataset.state = state;
  }

  /** Tell screen readers, politely: status changes, never every token. */
  announce(text) {
    if (!text || !this.announcer) return;
    clearTimeout(this.announceTimer);
    // Emptied first, so the same words twice in a row are read twice.
    this.announcer.textContent = "";
    this.announceTimer = setTimeout(() => {
      this.announcer.textContent = text;
    }, 100);
  }
}

const root = document.querySelector("#assistant[data-stream-url]");
if (root) new Conversation(root).start();
