// What the chat client checks in server frames, and the ids it gives its own messages.

/** A random UUID; crypto.randomUUID needs a secure context, getRandomValues does not. */
export function newClientId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function isMessage(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    Number.isSafeInteger(value.id) &&
    value.id > 0 &&
    typeof value.body === "string" &&
    value.author !== null &&
    typeof value.author === "object" &&
    typeof value.author.username === "string"
  );
}

export function isNames(value) {
  return Array.isArray(value) && value.every((name) => typeof name === "string");
}

/** The count and version every presence frame carries. */
export function isPresence(frame) {
  return Number.isSafeInteger(frame.count) && Number.isSafeInteger(frame.version);
}
