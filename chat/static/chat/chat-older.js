// Older messages: the plain "Older messages" link (a page of its own without JavaScript)
// becomes a button, and scrolling to the top, that loads them into this page over the socket.

import { element } from "./chat-view.js";

const HISTORY_PAGE = 50;

export class OlderMessages {
  /**
   * `room` gives: view (MessageList), send(frame), and the state it keeps up to date:
   * hasOlder (the server has more), olderRequested (a "history" request is waiting for its
   * answer), initialHistory (this socket's first history frame has arrived), socket.
   */
  constructor(root, room) {
    this.root = root;
    this.room = room;
    this.button = null;
  }

  enhance() {
    const link = this.root.querySelector("[data-chat-older]");
    this.button = element("button", "chat-older link", "Load older messages");
    this.button.type = "button";
    this.button.dataset.chatLoadOlder = "";
    this.button.addEventListener("click", () => this.load());
    const list = this.root.querySelector("[data-chat-messages]");
    if (link) link.replaceWith(this.button);
    else (list.closest(".pane-scroll-wrap") ?? list).before(this.button);
    list.addEventListener("scroll", () => {
      if (list.scrollTop === 0 && list.scrollHeight > list.clientHeight) this.load();
    });
    this.update();
  }

  load() {
    const room = this.room;
    const oldest = room.view.ids()[0];
    if (!room.hasOlder || room.olderRequested || !room.initialHistory || oldest === undefined) {
      return;
    }
    if (room.send({ type: "history", before: oldest, limit: HISTORY_PAGE })) {
      room.olderRequested = true;
      this.update();
    }
  }

  update() {
    if (!this.button) return;
    const room = this.room;
    this.button.hidden = !room.hasOlder;
    const live = room.socket?.readyState === WebSocket.OPEN && room.initialHistory;
    this.button.disabled = !live || room.olderRequested;
    this.button.textContent = room.olderRequested ? "Loading…" : "Load older messages";
  }
}
