// The chat page's offline queue (used by chat.js).

/**
 * The offline queue: what was written and not yet acknowledged, by client_id. Kept in
 * sessionStorage too, so a reload of the tab does not lose it (the server drops a resend
 * of a message it already has: same client_id, same ack).
 */
export class Outbox {
  constructor(room) {
    this.key = `streamsite.chat.outbox.${room}`;
    this.entries = new Map();
  }

  restore() {
    let saved = [];
    try {
      saved = JSON.parse(sessionStorage.getItem(this.key) || "[]");
    } catch {
      saved = [];
    }
    return Array.isArray(saved)
      ? saved.filter((entry) => typeof entry?.clientId === "string" && typeof entry?.body === "string")
      : [];
  }

  save() {
    const pending = [...this.entries.values()]
      .filter((entry) => entry.state === "pending")
      .map(({ clientId, body }) => ({ clientId, body }));
    try {
      if (pending.length) sessionStorage.setItem(this.key, JSON.stringify(pending));
      else sessionStorage.removeItem(this.key);
    } catch {
      // Storage full or refused: the queue still lives as long as the page.
    }
  }

  add(entry) {
    this.entries.set(entry.clientId, entry);
    this.save();
  }

  get(clientId) {
    return this.entries.get(clientId);
  }

  remove(clientId) {
    const entry = this.entries.get(clientId);
    if (entry) clearTimeout(entry.retryTimer);
    this.entries.delete(clientId);
    this.save();
  }

  pending() {
    return [...this.entries.values()].filter((entry) => entry.state === "pending");
  }
}
