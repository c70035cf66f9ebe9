// Who is online in a chat room (the page's side column), kept from presence frames.

import { element } from "./chat-view.js";

/**
 * Who is online (in the page's side column). The socket sends the first page of names
 * (sorted) with the count on connect, then only what changes (presence.delta); "Show
 * more" asks for the next page. Names are known for sure up to the last one paged
 * (`until`; null when all are known): only those are listed, in order.
 */
export class Presence {
  constructor(page, { onMore } = {}) {
    this.section = page.querySelector("[data-chat-presence]");
    this.list = this.section?.querySelector("ul");
    this.onMore = onMore;
    this.names = new Set();
    this.version = -1; // the snapshot's: changes up to it are in it
    this.count = 0;
    this.until = null;
    this.asked = false; // a page is on its way
    if (!this.list) return;
    this.countNode = element("p", "chat-muted");
    this.countNode.dataset.testid = "chat-online-count";
    this.moreButton = element("button", "link", "Show more");
    this.moreButton.type = "button";
    this.moreButton.hidden = true;
    this.moreButton.addEventListener("click", () => this.more());
    this.list.before(this.countNode);
    this.list.after(this.moreButton);
  }

  /** The first page (on connect): replaces everything known. */
  snapshot({ online, count, more, version }) {
    this.names = new Set(online);
    this.version = version;
    this.count = count;
    this.until = more && online.length ? online[online.length - 1] : null;
    this.asked = false;
    this.render();
  }

  /** Who came online and who left since; dropped if the snapshot already holds it. */
  delta({ joined, left, count, version }) {
    if (version <= this.version) return;
    for (const name of joined) this.names.add(name);
    for (const name of left) this.names.delete(name);
    this.count = count;
    this.render();
  }

  /** The names after `after`: the truth for that range. */
  page({ after, online, more, count }) {
    if (after !== this.until) return; // a snapshot came since it was asked for
    const last = more && online.length ? online[online.length - 1] : null;
    for (const name of [...this.names]) {
      if (name > after && (last === null || name <= last)) this.names.delete(name);
    }
    for (const name of online) this.names.add(name);
    this.count = count;
    this.until = last;
    this.asked = false;
    this.render();
  }

  more() {
    if (this.until === null || this.asked || !this.onMore) return;
    this.asked = this.onMore(this.until);
    this.render();
  }

  render() {
    if (!this.list) return;
    const until = this.until;
    const shown = [...this.names].filter((name) => until === null || name <= until).sort();
    this.list.replaceChildren(...shown.map((name) => element("li", "", name)));
    this.countNode.textContent = `${this.count} online`;
    this.moreButton.hidden = until === null;
    this.moreButton.disabled = this.asked;
    this.section.hidden = false;
  }
}
