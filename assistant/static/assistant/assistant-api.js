// Talking to the assistant's HTTP API (docs/protocol.md, "Assistant"): requests with the
// CSRF token, refusals turned into something to tell the user, and the conversation's
// event stream kept open through failures.

import { Backoff } from "../js/reconnect.js";
import { readEvents } from "./sse-reader.js";

// Refusals of the stream that retrying cannot change: say why and stop.
const FINAL_STREAM_REFUSALS = new Map([
  [400, "The page asked for a position the server does not know. Reload the page."],
  [403, "You are logged out. Log in again to follow this conversation."],
  [404, "This conversation no longer exists."],
]);

/** A random UUID; crypto.randomUUID needs a secure context (https or localhost). */
export function newClientId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
  bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  return hex.replace(/^(.{8})(.{4})(.{4})(.{4})/, "$1-$2-$3-$4-");
}

/**
 * The events of an SSE response whose data are JSON objects, as {type, data}; others are
 * skipped, except an `error` event, whose plain text becomes {error: text}.
 */
export async function* readJsonEvents(response) {
  for await (const event of readEvents(response)) {
    let data = null;
    try {
      data = JSON.parse(event.data);
    } catch {
      if (event.type === "error") data = { error: event.data };
    }
    if (data !== null && typeof data === "object") yield { type: event.type, data };
  }
}

/** POST with the CSRF token; `json` becomes the body (JSON), else `form` (FormData). */
export function post(url, { csrfToken, json, form, accept = "application/json", signal } = {}) {
  const headers = { "X-CSRFToken": csrfToken, Accept: accept };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = new FormData(form);
  }
  return fetch(url, { method: "POST", headers, body, credentials: "same-origin", signal });
}

/**
 * What to tell the user about a refused request: {text, link?: {href, text}}.
 *
 * The API answers refusals with JSON {"error", ...}; anything else (Django's CSRF page,
 * a proxy's error) gets a message by status.
 */
export async function refusal(response) {
  let body = {};
  if ((response.headers.get("Content-Type") || "").includes("application/json")) {
    try {
      body = (await response.json()) || {};
    } catch {
      body = {};
    }
  }
  const error = typeof body.error === "string" && body.error ? body.error : "";
  switch (response.status) {
    case 409: {
      const notice = { text: error || "Another answer is still running." };
      // Only a path on this site: never a javascript: or foreign URL from a body.
      if (typeof body.running === "string" && /^\/(?!\/)/.test(body.running)) {
        notice.link = { href: body.running, text: "See the running answer" };
      }
      return notice;
    }
    case 429: {
      const resets = new Date(body.resets_at);
      const when = Number.isNaN(resets.getTime())
        ? ""
        : ` It resets at ${resets.toLocaleString([], { dateStyle: "medium", timeStyle: "short" })}.`;
      return { text: `${error || "You have used today's assistant budget."}${when}` };
    }
    case 400:
      return { text: error || "The server refused the request." };
    case 403:
      return {
        text: error || "Your session has expired or the page is out of date. Reload the page and try again.",
      };
    case 404:
      return { text: error || "Not found: it may have been deleted." };
    default:
      return { text: `The server failed (${response.status}). Try again in a moment.` };
  }
}

/**
 * The conversation's event stream, kept open: read with fetch (so refusals are seen and
 * the resume position is ours to choose), reopened with backoff after any failure.
 *
 * On every (re)connect it asks `cursor()` where to resume (`<answer>:<position>`, "" for
 * the whole conversation). `onEvent(type, data)` gets each event, `onState(state, text)`
 * the connection's state: "connecting", "live", "offline" or "stopped".
 */
export class Follower {
  constructor(url, { cursor, onEvent, onState }) {
    this.url = url;
    this.cursor = cursor;
    this.onEvent = onEvent;
    this.onState = onState;
    this.backoff = new Backoff();
    this.controller = null;
    this.stopped = false;
    this.connectedOnce = false;
    window.addEventListener("online", () => this.backoff.hurry());
  }

  start() {
    this.open();
  }

  /** Read again from the database: something this page had was lost on the way. */
  resync() {
    if (this.stopped || this.backoff.pending) return;
    this.controller?.abort();
    this.controller = null;
    this.backoff.schedule(() => this.open());
  }

  async open() {
    if (this.stopped) return;
    const controller = new AbortController();
    this.controller = controller;
    this.onState("connecting", this.connectedOnce ? "Reconnecting…" : "");
    const url = new URL(this.url, window.location.href);
    const cursor = this.cursor();
    if (cursor) url.searchParams.set("after", cursor);
    try {
      const response = await fetch(url, {
        headers: { Accept: "text/event-stream" },
        credentials: "same-origin",
        cache: "no-store",
        signal: controller.signal,
      });
      const final = FINAL_STREAM_REFUSALS.get(response.status);
      if (final) {
        this.stop(final);
        return;
      }
      if (!response.ok || !response.body) throw new Error(`status ${response.status}`);
      this.backoff.reset();
      this.connectedOnce = true;
      this.onState("live", "");
      for await (const { type, data } of readJsonEvents(response)) {
        if (controller !== this.controller) return; // resynced: a newer stream took over
        this.onEvent(type, data);
      }
      // The server ended the stream (it restarts, or this page read too slowly): resume.
    } catch (error) {
      if (controller !== this.controller) return; // aborted on purpose
    }
    if (controller !== this.controller) return;
    this.controller = null;
    const delay = this.backoff.schedule(() => this.open());
    const seconds = Math.max(1, Math.round(delay / 1000));
    this.onState("offline", delay >= 0 ? `Offline. Reconnecting in ${seconds} s…` : "Offline. Reconnecting…");
  }

  /** Closed for good (logged out, the conversation is gone): no more retries. */
  stop(reason) {
    this.stopped = true;
    this.backoff.cancel();
    this.controller?.abort();
    this.controller = null;
    this.onState("stopped", reason);
  }
}
