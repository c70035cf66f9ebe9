// The notification bell in the page: badge, drop-down, toasts, and mark-read forms.
//
// The server renders the bell (templates/notifications/bell.html) so it works without
// JavaScript; notifications.js feeds this module the stream's events. Text from users
// goes into the page with textContent only, and links are set only from same-site paths
// or http(s) URLs (`safeLink`).

const TOAST_MILLISECONDS = 6000;
// Toasts on screen at once: a burst (catching up after a night offline) shows the newest.
const TOASTS_SHOWN = 4;
const LEVELS = new Set(["info", "success", "warning", "error"]);
const BODY_PREVIEW_CHARS = 160;

// Links ----------------------------------------------------------------------------------

/** The URL to link to, or null: a path on this site or an absolute http(s) URL only. */
export function safeLink(value) {
  if (typeof value !== "string" || value === "") return null;
  // Browsers drop tabs and newlines inside URLs and read "/\host" as "//host": refuse any
  // control character or space, and check where the URL really points once parsed.
  if (/[\u0000-\u0020\u007f]/.test(value)) return null;
  let parsed;
  try {
    parsed = new URL(value, window.location.origin);
  } catch {
    return null;
  }
  if (value.startsWith("/")) {
    return parsed.origin === window.location.origin ? parsed.href : null;
  }
  if (/^https?:\/\//i.test(value) && (parsed.protocol === "http:" || parsed.protocol === "https:")) {
    return parsed.href;
  }
  return null;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function preview(text) {
  const value = String(text ?? "");
  return value.length > BODY_PREVIEW_CHARS ? `${value.slice(0, BODY_PREVIEW_CHARS - 1)}…` : value;
}

function levelOf(notification) {
  return LEVELS.has(notification.level) ? notification.level : "info";
}

// CSRF -------------------------------------------------------------------------------------

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return "";
}

/** The CSRF token: the cookie (fresh after a login elsewhere), else the one rendered. */
function csrfToken(form) {
  const rendered = form?.querySelector("input[name=csrfmiddlewaretoken]")?.value;
  return cookie("csrftoken") || rendered || "";
}

// The bell ---------------------------------------------------------------------------------

/** The server-rendered bell: badge, drop-down list, and the forms in it. */
export class Bell {
  constructor(root) {
    this.root = root;
    this.badge = root.querySelector("[data-bell-count]");
    this.unreadLabel = root.querySelector("[data-bell-unread-label]");
    this.button = root.querySelector("[data-bell-button]");
    this.list = root.querySelector("[data-bell-list]");
    this.empty = root.querySelector("[data-bell-empty]");
    this.menu = root.querySelector("details");
    // As many as the server renders (notifications.context_processors.BELL_LATEST).
    this.size = Number(root.dataset.bellSize) || 5;
    this.markReadUrl = root.dataset.markReadUrl || "";
    this.unread = Number(this.badge?.textContent) || 0;
    this.closeOnOutsideClick();
  }

  setUnread(count) {
    if (!Number.isSafeInteger(count) || count < 0) return;
    this.unread = count;
    this.badge.textContent = String(count);
    this.badge.hidden = count === 0;
    if (this.unreadLabel) this.unreadLabel.hidden = count === 0;
  }

  has(id) {
    return this.list.querySelector(`[data-notification-id="${id}"]`) !== null;
  }

  /** Put a new notification at the top of the drop-down, keeping its length. */
  prepend(notification) {
    if (this.has(notification.id)) return;
    this.list.prepend(this.item(notification));
    while (this.list.children.length > this.size) this.list.lastElementChild.remove();
    if (this.empty) this.empty.hidden = true;
  }

  item(notification) {
    const item = element("li", `bell-item level-${levelOf(notification)}`);
    item.dataset.notificationId = String(notification.id);
    if (notification.read) item.classList.add("is-read");

    const title = element("span", "bell-item-title");
    const href = safeLink(notification.url);
    if (href) {
      const link = element("a", "", notification.title);
      link.href = href;
      title.append(link);
    } else {
      title.textContent = notification.title;
    }
    item.append(title);
    if (notification.body) item.append(element("span", "bell-item-body", preview(notification.body)));

    const meta = element("span", "bell-item-meta");
    const time = element("time", "", "just now");
    if (notification.created_at) time.dateTime = notification.created_at;
    meta.append(time);
    if (!notification.read && this.markReadUrl) meta.append(this.markReadForm(notification.id));
    item.append(meta);
    return item;
  }

  /** The same plain POST form the server renders, so it works even if fetch fails. */
  markReadForm(id) {
    const form = element("form", "bell-mark-read");
    form.method = "post";
    // The URL is rendered for id 0 ("/notifications/0/read/"): put this id in its place.
    const at = this.markReadUrl.lastIndexOf("/0/");
    form.action = `${this.markReadUrl.slice(0, at)}/${id}/${this.markReadUrl.slice(at + 3)}`;
    form.dataset.notificationMarkRead = "";
    for (const [name, value] of [
      ["csrfmiddlewaretoken", csrfToken(this.root)],
      ["next", window.location.pathname + window.location.search],
    ]) {
      const input = element("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      form.append(input);
    }
    const button = element("button", "bell-link-button", "Mark read");
    button.type = "submit";
    form.append(button);
    return form;
  }

  closeOnOutsideClick() {
    document.addEventListener("click", (event) => {
      if (this.menu.open && !this.root.contains(event.target)) this.menu.open = false;
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.menu.open) {
        this.menu.open = false;
        this.button.focus();
      }
    });
  }
}

/** Mark notifications read wherever the page shows them (drop-down, list page). */
export function showRead({ ids, up_to: upTo }) {
  const wanted = Array.isArray(ids) ? new Set(ids.map(Number)) : null;
  const limit = Number.isSafeInteger(upTo) ? upTo : null;
  if (wanted === null && limit === null) return;
  for (const node of document.querySelectorAll("[data-notification-id]")) {
    const id = Number(node.dataset.notificationId);
    if ((wanted && wanted.has(id)) || (limit !== null && id <= limit)) {
      node.classList.add("is-read");
      node.classList.remove("is-unread");
      for (const form of node.querySelectorAll("form[data-notification-mark-read]")) form.remove();
      const status = node.querySelector("[data-notification-status]");
      if (status) status.textContent = "Read";
    }
  }
}

/** Take deleted notifications off the page (drop-down, list page). */
export function showDeleted({ ids }) {
  if (!Array.isArray(ids)) return;
  const gone = new Set(ids.map(Number));
  for (const node of document.querySelectorAll("[data-notification-id]")) {
    if (gone.has(Number(node.dataset.notificationId))) node.remove();
  }
}

// Toasts -----------------------------------------------------------------------------------

/**
 * Where toasts go: a polite live region, so screen readers read each new toast once. The
 * site's pages render it empty (base.html: a region added with its content may not be
 * announced); pages that do not (the admin) get one here.
 */
function toastRegion() {
  let region = document.querySelector("[data-toast-region]");
  if (!region) {
    region = element("div", "toast-region");
    region.dataset.toastRegion = "";
    region.setAttribute("role", "log"); // polite; additions are read, removals are not
    region.setAttribute("aria-label", "New notifications");
    document.body.append(region);
  }
  return region;
}

/** A small message that goes away by itself (not while the pointer rests on it). */
export function showToast(notification) {
  const toast = element("div", `toast level-${levelOf(notification)}`);
  toast.dataset.testid = "notification-toast";
  toast.dataset.notificationId = String(notification.id);
  toast.append(element("strong", "toast-title", notification.title));
  if (notification.body) toast.append(element("span", "toast-body", preview(notification.body)));
  const href = safeLink(notification.url);
  if (href) {
    const link = element("a", "toast-link", "Open");
    link.href = href;
    toast.append(link);
  }
  const close = element("button", "toast-close", "×");
  close.type = "button";
  close.setAttribute("aria-label", "Dismiss");
  close.addEventListener("click", () => toast.remove());
  toast.append(close);

  let timer = setTimeout(() => toast.remove(), TOAST_MILLISECONDS);
  toast.addEventListener("mouseenter", () => clearTimeout(timer));
  toast.addEventListener("mouseleave", () => {
    timer = setTimeout(() => toast.remove(), TOAST_MILLISECONDS / 2);
  });
  const region = toastRegion();
  region.append(toast);
  while (region.children.length > TOASTS_SHOWN) region.firstElementChild.remove();
}

// Mark read without leaving the page -----------------------------------------------------

async function markRead(form, bell) {
  const response = await fetch(form.action, {
    method: "POST",
    body: new FormData(form),
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) },
    credentials: "same-origin",
    redirect: "error",
  });
  if (!response.ok) throw new Error(`mark read: HTTP ${response.status}`);
  const result = await response.json();
  showRead(result);
  bell?.setUnread(result.unread);
}

export function enhanceMarkReadForms(bell) {
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.matches("[data-notification-mark-read]")) {
      return;
    }
    event.preventDefault();
    if (form.dataset.busy) return;
    form.dataset.busy = "1";
    markRead(form, bell)
      .catch(() => form.submit()) // the plain form: the server answers with a page
      .finally(() => delete form.dataset.busy);
  });
}
