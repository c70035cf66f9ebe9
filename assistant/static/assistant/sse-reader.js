// Server-Sent Events from a fetch() body, parsed as browsers parse an EventSource stream.
//
// EventSource can only GET; the assistant's answer arrives as the body of a POST, so this
// module parses the bytes itself, following the WHATWG "event stream interpretation"
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
//
// - one TextDecoder('utf-8') decodes the whole body with {stream: true}, so a character
//   split between two network chunks is decoded once both halves are in (a leading BOM is
//   dropped, invalid bytes become U+FFFD);
// - lines end with CRLF, LF or a lone CR, also when the CR and the LF arrive in different
//   chunks; an unfinished line waits for the next chunk;
// - "field: value" with one optional space after the colon; a line starting with ":" is a
//   comment; `data` lines are joined with LF; `event` names the type ("message" if none);
//   `id` sets the last event id (kept for later events; ignored if it holds NUL); `retry`
//   (digits only) is kept in `parser.retry`; a blank line dispatches the event, unless it
//   has no data; an event the stream ends in the middle of is dropped.
//
// Deliberate extensions, for OpenAI-style streams: a message whose data is exactly
// "[DONE]" (`data: [DONE]` or `data:[DONE]`) ends the stream: it is not yielded, and
// nothing after it is parsed. An `event: error` is yielded like any other event
// ({type: "error", data}); the caller decides what it means.
//
//   const parser = new SSEParser();
//   for await (const event of readEvents(response, { parser })) console.log(event.type, event.data);
//   parser.finished; // true if the stream ended with [DONE] (false: the body just stopped)

export const DONE_DATA = "[DONE]";

const LF = 0x0a;
const CR = 0x0d;

/** An incremental parser: push() the body's chunks, then end(). Each returns new events. */
export class SSEParser {
  constructor() {
    this.decoder = new TextDecoder("utf-8");
    this.partial = ""; // the current line, not yet ended
    this.afterCR = false; // the last text ended with CR: a leading LF belongs to it
    this.data = "";
    this.hasData = false;
    this.type = "";
    this.lastEventId = "";
    this.retry = null;
    this.finished = false; // [DONE] was seen
    this.ended = false;
  }

  /** Parse a chunk of the body (a Uint8Array, or anything with bytes); return its events. */
  push(chunk) {
    if (this.finished || this.ended) return [];
    const bytes = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk);
    return this.feed(this.decoder.decode(bytes, { stream: true }));
  }

  /** The body ended: flush the decoder, drop an unfinished event, return the last events. */
  end() {
    if (this.finished || this.ended) return [];
    const events = this.feed(this.decoder.decode());
    this.ended = true;
    // The spec discards an event the stream ends in the middle of, and its last line too.
    this.partial = "";
    this.data = "";
    this.hasData = false;
    this.type = "";
    return events;
  }

  feed(text) {
    const events = [];
    let start = 0;
    if (this.afterCR && text.length > 0) {
      if (text.charCodeAt(0) === LF) start = 1; // the LF of a CRLF split across chunks
      this.afterCR = false;
    }
    for (let i = start; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code !== LF && code !== CR) continue;
      const line = this.partial + text.slice(start, i);
      this.partial = "";
      if (code === CR) {
        if (i + 1 < text.length) {
          if (text.charCodeAt(i + 1) === LF) i += 1;
        } else {
          this.afterCR = true; // the next chunk may start with this CR's LF
        }
      }
      start = i + 1;
      this.line(line, events);
      if (this.finished) return events;
    }
    if (start < text.length) this.partial += text.slice(start);
    return events;
  }

  line(line, events) {
    if (line === "") {
      this.dispatch(events);
      return;
    }
    if (line.charCodeAt(0) === 0x3a) return; // ":" starts a comment (keepalives)
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon !== -1) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    }
    switch (field) {
      case "event":
        this.type = value;
        break;
      case "data":
        this.data = this.hasData ? `${this.data}\n${value}` : value;
        this.hasData = true;
        break;
      case "id":
        if (!value.includes("\u0000")) this.lastEventId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  dispatch(events) {
    const type = this.type || "message";
    const data = this.data;
    const hasData = this.hasData;
    this.type = "";
    this.data = "";
    this.hasData = false;
    if (!hasData) return;
    if (type === "message" && data === DONE_DATA) {
      this.finished = true;
      return;
    }
    events.push({ type, data, id: this.lastEventId });
  }
}

/**
 * Yield the events of a fetch Response's body as they arrive.
 *
 * Returns at [DONE] (cancelling the rest of the body) or when the body ends; pass your own
 * `parser` to learn which (`parser.finished`). A network error while reading is thrown.
 * Breaking out of the loop cancels the body, which closes the request.
 */
export async function* readEvents(response, { parser = new SSEParser() } = {}) {
  const reader = response.body.getReader();
  let complete = false;
  try {
    while (true) {
      const { value, done } = await reader.read();
      const events = done ? parser.end() : parser.push(value);
      for (const event of events) yield event;
      if (done || parser.finished) {
        complete = done;
        return;
      }
    }
  } finally {
    if (!complete) {
      // [DONE], an early break, or an error: hang up rather than leave the body open.
      reader.cancel().catch(() => {});
    }
  }
}
