// @ts-check
/**
 * The open room, inside the main window (templates/_rooms.html `room_pane`): its name and
 * topic, the transcript ("Bob Builder: hello"), the member list with presence dots and
 * roles, "bob is typing…", the emoticon button and the input (Enter sends, Shift+Enter is
 * a new line). DOM only: ui/rooms.js hands it the room and the transcript
 * (state/roomlog.js) and hears what the user does through the handlers.
 *
 * Message text goes in through ui/emoticons.js (text nodes, emoji spans, checked links),
 * never as markup; `@me` is wrapped in a <mark>. Lines that mention me are highlighted.
 * The transcript sticks to the bottom while the user is there, keeps the lines in view
 * when older ones are put above, and asks for older ones at the top.
 */

import { splitMentions, transcript } from "../state/roomlog.js";
import { Composer } from "./composer.js";
import { byId, el } from "./dom.js";
import { openPicker, render as renderText } from "./emoticons.js";

/** @typedef {import("../state/roomlog.js").RoomLog} RoomLog */
/** @typedef {import("../state/roomlog.js").Line} Line */
/** @typedef {import("../state/roomlog.js").Member} Member */
/** @typedef {import("../state/rooms.js").Room} Room */

/**
 * @typedef {object} RoomHandlers
 * @property {(text: string) => void} onSend
 * @property {(active: boolean) => void} onTyping
 * @property {() => void} onOlder
 * @property {() => void} onClose
 * @property {() => void} onSeen the user is in the room (click, focus, scrolled to the end)
 * @property {(clientId: string) => void} onRetry
 * @property {() => void} onInvite
 * @property {() => void} onUnlock
 * @property {(anchor: HTMLElement) => void} onRoomMenu
 * @property {(line: Line, where: {anchor?: HTMLElement, point?: {x: number, y: number}, returnFocus: HTMLElement}) => void} onLineMenu
 * @property {(member: Member, where: {anchor?: HTMLElement, point?: {x: number, y: number}, returnFocus: HTMLElement}) => void} onMemberMenu
 */

/** A note: a line that is not a message ("bob joined the room"). */
/** @typedef {{key: string, text: string, tone: string, after: string | null}} Note */

const TOP_SLACK_PX = 48;
const BOTTOM_SLACK_PX = 24;
const MAX_NOTES = 200;
/** Wider than this (40rem), the member list stays beside the transcript. */
const WIDE_PX = 640;
const ROLE_BADGE = { owner: "Owner", moderator: "Mod", member: "" };
const SHOWN = { online: "Online", away: "Away", busy: "Busy", offline: "Offline" };

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

export class RoomView {
  /**
   * @param {{me: string, handlers: RoomHandlers}} options
   */
  constructor({ me, handlers }) {
    this.me = me;
    this.handlers = handlers;
    this.root = byId("room-pane", HTMLElement);
    this.title = byId("room-title", HTMLElement);
    this.topic = byId("room-topic", HTMLElement);
    this.icon = byId("room-icon", HTMLElement);
    this.scroller = byId("room-transcript", HTMLElement);
    this.older = byId("room-older", HTMLElement);
    this.empty = byId("room-empty", HTMLElement);
    this.lines = byId("room-lines", HTMLOListElement);
    this.memberPanel = byId("room-members", HTMLElement);
    this.memberList = byId("room-member-list", HTMLUListElement);
    this.memberCount = byId("room-member-count", HTMLElement);
    this.membersToggle = byId("room-members-toggle", HTMLButtonElement);
    this.typingLine = byId("room-typing", HTMLElement);
    this.input = byId("room-input", HTMLTextAreaElement);
    this.composer = new Composer(this.input, {
      onSend: (text) => this.handlers.onSend(text),
      onTyping: (active) => this.handlers.onTyping(active),
      isLocked: () => this.isLocked,
    });
    this.inviteButton = byId("room-invite", HTMLButtonElement);
    this.moreButton = byId("room-more", HTMLButtonElement);
    this.emojiButton = byId("room-emoji", HTMLButtonElement);
    this.locked = byId("room-locked", HTMLElement);
    this.lockedText = byId("room-locked-text", HTMLElement);
    this.sendButton = /** @type {HTMLButtonElement} */ (
      byId("room-compose", HTMLFormElement).querySelector(".room-pane__send")
    );
    /** @type {number | null} */
    this.room = null;
    /** @type {Map<string, {sig: string, node: HTMLElement}>} */
    this.nodes = new Map();
    /** @type {Note[]} */
    this.notes = [];
    this.noteCount = 0;
    this.isLocked = false;
    /** @type {Map<string, Member>} the members shown, by username */
    this.members = new Map();
    /** @type {Line[]} the lines shown, in order */
    this.shown = [];
    this.bind();
    // The member list shows beside the transcript in a wide room, and is an overlay to open
    // in a narrow one (css/rooms.css: the same width, as a container query).
    /** @type {boolean | null} */
    this.wide = null;
    new ResizeObserver(() => {
      const wide = this.root.clientWidth >= WIDE_PX;
      if (this.root.clientWidth && wide !== this.wide) {
        this.wide = wide;
        this.showMembers(wide);
      }
    }).observe(this.root);
  }

  bind() {
    const { handlers } = this;
    byId("room-close", HTMLButtonElement).addEventListener("click", () => handlers.onClose());
    byId("room-back", HTMLButtonElement).addEventListener("click", () => handlers.onClose());
    byId("room-unlock", HTMLButtonElement).addEventListener("click", () => handlers.onUnlock());
    this.inviteButton.addEventListener("click", () => handlers.onInvite());
    this.moreButton.addEventListener("click", () => handlers.onRoomMenu(this.moreButton));
    this.membersToggle.addEventListener("click", () => {
      const open = this.membersToggle.getAttribute("aria-expanded") !== "true";
      this.showMembers(open);
    });
    this.emojiButton.addEventListener("click", () => {
      if (this.emojiButton.getAttribute("aria-expanded") !== "true") {
        openPicker(this.emojiButton, (emoji) => this.insert(emoji));
      }
    });
    byId("room-compose", HTMLFormElement).addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !event.defaultPrevented) {
        this.handlers.onClose();
      }
    });
    this.scroller.addEventListener("scroll", () => {
      if (this.scroller.scrollTop < TOP_SLACK_PX) {
        handlers.onOlder();
      }
      if (this.atBottom()) {
        handlers.onSeen();
      }
    });
    this.root.addEventListener("pointerdown", () => handlers.onSeen());
    this.root.addEventListener("focusin", () => handlers.onSeen());
    this.lines.addEventListener("click", (event) => {
      const button = /** @type {Element} */ (event.target).closest(".room-line__more");
      const line = button?.closest(".room-line");
      if (button instanceof HTMLElement && line instanceof HTMLElement) {
        const found = this.lineByKey(line.dataset.key ?? "");
        if (found) {
          handlers.onLineMenu(found, { anchor: button, returnFocus: button });
        }
      }
    });
    this.lines.addEventListener("contextmenu", (event) => {
      const line = /** @type {Element} */ (event.target).closest(".room-line");
      const found = line instanceof HTMLElement ? this.lineByKey(line.dataset.key ?? "") : null;
      if (found && found.id !== null && !(/** @type {Element} */ (event.target).closest("a"))) {
        event.preventDefault();
        const more = /** @type {HTMLElement} */ (
          line?.querySelector(".room-line__more") ?? this.input
        );
        handlers.onLineMenu(found, {
          point: { x: event.clientX, y: event.clientY },
          returnFocus: more,
        });
      }
    });
    this.memberList.addEventListener("click", (event) => {
      const row = /** @type {Element} */ (event.target).closest(".room-member");
      if (row instanceof HTMLElement) {
        const member = this.members.get(row.dataset.username ?? "");
        if (member) {
          handlers.onMemberMenu(member, { anchor: row, returnFocus: row });
        }
      }
    });
  }

  /** @param {string} key */
  lineByKey(key) {
    return this.shown.find((line) => line.key === key) ?? null;
  }

  /** @param {boolean} open */
  showMembers(open) {
    this.membersToggle.setAttribute("aria-expanded", String(open));
    this.root.classList.toggle("room-pane--no-members", !open);
  }

  /**
   * Show another room (or the same one again).
   * @param {Room} room
   */
  setRoom(room) {
    if (this.room !== room.id) {
      this.stopTyping();
      this.room = room.id;
      this.nodes.clear();
      this.lines.replaceChildren();
      this.notes = [];
      this.shown = [];
      this.input.value = "";
      this.typingLine.textContent = "";
      // A narrow room starts with the transcript; a wide one shows the members too.
      this.showMembers(this.wide !== false);
    }
    this.root.dataset.room = String(room.id);
    this.root.dataset.kind = room.kind;
    this.root.dataset.role = room.role;
    this.title.textContent = room.name;
    const lock = room.encrypted ? "End-to-end encrypted" : "";
    this.topic.textContent = [lock, room.topic].filter(Boolean).join(" · ");
    this.topic.hidden = !this.topic.textContent;
    this.icon.className = `room-pane__icon room-pane__icon--${room.encrypted ? "locked" : room.kind}`;
    this.inviteButton.hidden = room.kind !== "group";
    this.input.placeholder = `Message ${room.name}…`;
    this.input.setAttribute("aria-label", `Message to ${room.name}`);
  }

  /**
   * @param {boolean} locked
   * @param {string} text
   * @param {boolean} canUnlock
   */
  setLocked(locked, text, canUnlock) {
    this.isLocked = locked;
    this.locked.hidden = !locked;
    this.lockedText.textContent = text;
    byId("room-unlock", HTMLButtonElement).hidden = !canUnlock;
    this.root.dataset.locked = String(locked);
    this.input.disabled = locked;
    this.sendButton.disabled = locked;
  }

  /** @param {string} text */
  insert(text) {
    this.composer.insert(text);
  }

  submit() {
    this.composer.submit();
  }

  stopTyping() {
    this.composer.stopTyping();
  }

  /** @param {string} text */
  setTyping(text) {
    this.typingLine.textContent = text;
    this.root.dataset.typing = String(Boolean(text));
  }

  /**
   * A line that is not a message, after the newest line.
   * @param {string} text
   * @param {string} [tone] info | join | leave | error
   */
  note(text, tone = "info") {
    this.noteCount += 1;
    const last = this.shown.length ? this.shown[this.shown.length - 1].key : null;
    this.notes.push({ key: `n:${this.noteCount}`, text, tone, after: last });
    if (this.notes.length > MAX_NOTES) {
      this.notes.shift();
    }
  }

  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < BOTTOM_SLACK_PX;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /**
   * @param {RoomLog} lines
   * @param {Set<string>} ignored
   * @param {(username: string) => string} nameOf
   */
  render(lines, ignored, nameOf) {
    const stick = this.atBottom() || this.scroller.scrollHeight <= this.scroller.clientHeight;
    const anchor = this.firstVisible();
    const entries = transcript(lines, ignored);
    this.shown = entries;
    const keys = new Set(entries.map((e) => e.key));
    /** @type {Map<string | null, Note[]>} */
    const notesAfter = new Map();
    for (const note of this.notes) {
      const after = note.after !== null && keys.has(note.after) ? note.after : null;
      notesAfter.set(after, [...(notesAfter.get(after) ?? []), note]);
    }
    /** @type {HTMLElement[]} */
    const nodes = [];
    const alive = new Set();
    /**
     * @param {string} key
     * @param {string} sig
     * @param {() => HTMLElement} build
     */
    const add = (key, sig, build) => {
      alive.add(key);
      const known = this.nodes.get(key);
      if (known && known.sig === sig) {
        nodes.push(known.node);
        return;
      }
      const node = build();
      node.dataset.key = key;
      this.nodes.set(key, { sig, node });
      nodes.push(node);
    };
    const addNotes = (/** @type {string | null} */ after) => {
      for (const note of notesAfter.get(after) ?? []) {
        add(note.key, "note", () => this.noteNode(note));
      }
    };
    addNotes(null);
    for (const line of entries) {
      const name = line.sender === this.me ? nameOf(this.me) : line.name || nameOf(line.sender);
      const sig = [
        line.state,
        line.text,
        line.problem,
        line.send,
        line.sendError,
        line.id,
        name,
      ].join("\u0000");
      add(line.key, sig, () => this.lineNode(line, name));
      addNotes(line.key);
    }
    for (const key of [...this.nodes.keys()]) {
      if (!alive.has(key)) {
        this.nodes.delete(key);
      }
    }
    this.place(nodes);
    this.older.hidden = !(lines.loading && lines.history);
    this.older.textContent = lines.loading ? "Loading older messages…" : "";
    this.empty.hidden = !(lines.history && !lines.loading && !nodes.length);
    this.root.dataset.count = String(entries.length);
    this.root.dataset.loading = String(lines.loading);
    if (stick) {
      this.scrollToBottom();
    } else if (anchor) {
      const node = this.nodes.get(anchor.key)?.node;
      if (node) {
        this.scroller.scrollTop += node.offsetTop - anchor.offset;
      }
    }
  }

  /**
   * Touch only what changed: the transcript is a live region.
   * @param {HTMLElement[]} nodes
   */
  place(nodes) {
    let cursor = this.lines.firstChild;
    for (const node of nodes) {
      if (node === cursor) {
        cursor = cursor.nextSibling;
      } else {
        this.lines.insertBefore(node, cursor);
      }
    }
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
  }

  firstVisible() {
    const top = this.scroller.scrollTop;
    for (const node of this.lines.children) {
      if (node instanceof HTMLElement && node.offsetTop + node.offsetHeight > top) {
        return { key: node.dataset.key ?? "", offset: node.offsetTop };
      }
    }
    return null;
  }

  /**
   * @param {Line} line
   * @param {string} name
   */
  lineNode(line, name) {
    const mine = line.sender === this.me;
    const node = el("li", {
      className: [
        "room-line",
        mine ? "room-line--mine" : "",
        line.mention ? "room-line--mention" : "",
      ].join(" "),
    });
    if (line.id !== null) {
      node.dataset.id = String(line.id);
    }
    node.dataset.sender = line.sender;
    node.dataset.state = line.state;
    if (line.send) {
      node.dataset.send = line.send;
    }
    const when = new Date(line.time);
    const body = el("span", { className: "room-line__text" });
    if (line.state === "open") {
      for (const part of splitMentions(line.text, this.me)) {
        body.append(
          part.mention
            ? el("mark", { className: "room-line__mention", text: part.text })
            : renderText(part.text),
        );
      }
    } else if (line.state === "locked") {
      body.textContent = "🔒 Encrypted: unlock your keys to read it";
      node.classList.add("room-line--locked");
    } else if (line.state === "failed") {
      body.textContent = `⚠ This message could not be read: ${line.problem}`;
      node.classList.add("room-line--problem");
    } else {
      body.textContent = "Decrypting…";
    }
    // The time first: on a narrow room the line flows and the time floats at its top right.
    node.append(
      el("time", {
        className: "room-line__time",
        text: timeFormat.format(when),
        attrs: { datetime: when.toISOString(), title: dateFormat.format(when) },
      }),
      el("span", { className: "room-line__who", text: name, attrs: { title: line.sender } }),
      body,
    );
    if (line.id !== null) {
      node.append(
        el("button", {
          className: "room-line__more",
          attrs: {
            type: "button",
            "aria-label": `Actions for this message from ${name}`,
            "aria-haspopup": "menu",
          },
        }),
      );
    }
    if (line.send === "sending") {
      node.classList.add("room-line--sending");
    } else if (line.send === "failed") {
      const retry = el("button", {
        className: "room-line__retry",
        text: "Retry",
        attrs: { type: "button" },
      });
      retry.addEventListener("click", () => this.handlers.onRetry(line.clientId));
      node.append(
        el("span", { className: "room-line__failed" }, [
          document.createTextNode(`Not sent: ${line.sendError}. `),
          retry,
        ]),
      );
    }
    return node;
  }

  /** @param {Note} note */
  noteNode(note) {
    const node = el("li", { className: `room-line room-line--note room-line--${note.tone}` }, [
      el("span", { className: "room-line__text", text: note.text }),
    ]);
    node.dataset.note = note.tone;
    return node;
  }

  /**
   * @param {Member[]} list
   * @param {Set<string>} ignored
   */
  renderMembers(list, ignored) {
    this.members = new Map(list.map((m) => [m.username, m]));
    const online = list.filter((m) => m.state !== "offline").length;
    this.memberCount.textContent = `${online}/${list.length}`;
    this.membersToggle.title = `${list.length} member${list.length === 1 ? "" : "s"}, ${online} online`;
    this.membersToggle.setAttribute("aria-label", `Members, ${online} of ${list.length} online`);
    const now = Date.now();
    this.memberList.replaceChildren(
      ...list.map((member) => {
        const badge = ROLE_BADGE[member.role];
        const shownState = SHOWN[/** @type {keyof typeof SHOWN} */ (member.state)] ?? "Offline";
        const row = el(
          "li",
          {
            className: `room-member room-member--${member.state}`,
            attrs: {
              tabindex: "0",
              role: "button",
              "aria-haspopup": "menu",
              title: `${member.name} (${member.username}) — ${shownState}`,
            },
          },
          [
            el("span", {
              className: `presence-dot presence-dot--${member.state}`,
              attrs: { role: "img", "aria-label": shownState },
            }),
            el("span", {
              className: "room-member__name",
              text: member.username === this.me ? `${member.name} (you)` : member.name,
            }),
          ],
        );
        row.dataset.username = member.username;
        row.dataset.state = member.state;
        row.dataset.role = member.role;
        if (badge) {
          row.append(
            el("span", {
              className: `room-member__role room-member__role--${member.role}`,
              text: badge,
            }),
          );
        }
        if (member.mutedUntil && member.mutedUntil > now) {
          row.append(el("span", { className: "room-member__tag", text: "muted" }));
        }
        if (ignored.has(member.username)) {
          row.classList.add("room-member--ignored");
          row.append(el("span", { className: "room-member__tag", text: "ignored" }));
        }
        row.addEventListener("keydown", (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            this.handlers.onMemberMenu(member, { anchor: row, returnFocus: row });
          }
        });
        return row;
      }),
    );
  }
}
