// Reconnect a dropped connection (EventSource, WebSocket) without a thundering herd.
//
// Exponential backoff with "full jitter": the n-th retry in a row waits a random time
// between 0 and min(maxMs, baseMs * 2^n), so clients that lost the same server at the
// same moment come back spread out instead of all at once. A successful open resets it.
//
//   const backoff = new Backoff();
//   function connect() {
//     const socket = new WebSocket(url);
//     socket.onopen = () => backoff.reset();
//     socket.onclose = () => backoff.schedule(connect);
//   }

/** The longest wait before the `attempt`-th retry in a row (0-based), in milliseconds. */
export function backoffCeiling(attempt, { baseMs = 1000, maxMs = 30000 } = {}) {
  // Capping the exponent keeps 2 ** attempt finite however long the outage lasts.
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
}

/** A full-jitter delay for the `attempt`-th retry: uniform in [0, ceiling). */
export function backoffDelay(attempt, { baseMs = 1000, maxMs = 30000, random = Math.random } = {}) {
  return Math.floor(random() * backoffCeiling(attempt, { baseMs, maxMs }));
}

/** Schedules retries one at a time, each waiting longer (with jitter) than the last. */
export class Backoff {
  constructor({ baseMs = 1000, maxMs = 30000, random = Math.random } = {}) {
    this.options = { baseMs, maxMs, random };
    this.attempt = 0;
    this.timer = null;
    this.retry = null;
  }

  /** Whether a retry is waiting to run. */
  get pending() {
    return this.timer !== null;
  }

  /**
   * Call `connect` after the next delay and return that delay in milliseconds.
   * While a retry is pending another is not scheduled (returns -1): one at a time.
   */
  schedule(connect) {
    if (this.timer !== null) return -1;
    const delay = backoffDelay(this.attempt, this.options);
    this.attempt += 1;
    this.retry = connect;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.retry = null;
      connect();
    }, delay);
    return delay;
  }

  /** Run the pending retry now, if there is one (the network came back, say). */
  hurry() {
    const retry = this.retry;
    if (retry === null) return;
    this.cancel();
    retry();
  }

  /** The connection opened: the next failure starts again from the shortest wait. */
  reset() {
    this.attempt = 0;
  }

  /** Drop the pending retry, if any (the owner is closing). */
  cancel() {
    clearTimeout(this.timer);
    this.timer = null;
    this.retry = null;
  }
}
