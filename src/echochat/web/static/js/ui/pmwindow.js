// @ts-check
/**
 * One private-message window, as Yahoo had it: a floating frame with the buddy's name and
 * presence in its title bar (drag it there), minimize and close buttons, the transcript,
 * "bob is typing…", the emoticon and BUZZ! buttons, and the input box (Enter sends,
 * Shift+Enter starts a new line). The frame is resizable (its bottom-right corner).
 *
 * DOM only: it is cloned from the page's `#pm-template`, shows what ui/pms.js hands it
 * (the conversation from state/conversations.js) and reports what the user does through
 * its handlers. Message text goes in through ui/emoticons.js (text nodes, emoji spans and
 * checked links), never as markup.
 *
 * Scrolling: the transcript sticks to the bottom while the user is there; when older
 * messages are put above, the lines in view stay where they were. Reaching the top asks
 * for older messages.
 */

import { tickOf, transcript } from "../state/conversations.js";
import { Composer } from "./composer.js";
import { el } from "./dom.js";
import { openPicker, render as renderText } from "./emoticons.js";

/** @typedef {import("../state/conversations.js").Conversation} Conversation */
/** @typedef {import("../state/conversations.js").Entry} Entry */

/**
 * A line that is not a message: a BUZZ!, a key change, a refusal.
 * @typedef {object} Note
 * @property {string} key
 * @property {string} text
 * @property {"info" | "buzz" | "warning" | "error"} tone
 * @property {string | null} after the key of the line it follows (null: the top)
 * @property {{label: string, run: () => void} | null} action a button on the line
 * @property {number} time
 */

/**
 * @typedef {object} PmHandlers
 * @property {(text: string) => void} onSend
 * @property {() => void} onBuzz
 * @property {(active: boolean) => void} onTyping
 * @property {() => void} onMinimize
 * @property {() => void} onClose
 * @property {() => void} onActivate the user is in this window (click, focus)
 * @property {() => void} onOlder scrolled to the top
 * @property {(clientId: string) => void} onRetry
 * @property {() => void} onUnlock
 * @property {() => void} onSafety
 * @property {() => void} onGeometry moved or resized
 */

const TOP_SLACK_PX = 48;
const BOTTOM_SLACK_PX = 24;
const MAX_INPUT = 4000;
/** Lines of one sender this close together share one name and time. */
const GROUP_MS = 120_000;

const TICKS = {
  sending: ["…", "Sending"],
  failed: ["!", "Not sent"],
  sent: ["✓", "Sent"],
  delivered: ["✓✓", "Delivered"],
  read: ["✓✓", "Read"],
};

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

export class PmWindow {
  /**
   * @param {{peer: string, me: string, myName: string, template: HTMLTemplateElement, handlers: PmHandlers}} options
   *   `myName`: how my own lines are signed (my display name)
   */
  constructor({ peer, me, myName, template, handlers }) {
    this.peer = peer;
    this.me = me;
    this.myName = myName || me;
    this.handlers = handlers;
    const root = /** @type {HTMLElement} */ (
      /** @type {DocumentFragment} */ (template.content.cloneNode(true)).firstElementChild
    );
    this.root = root;
    root.dataset.peer = peer;
    const titleId = `pm-title-${peer}`;
    const q = (/** @type {string} */ selector) =>
      /** @type {HTMLElement} */ (root.querySelector(selector));
    this.titlebar = q(".pm__titlebar");
    this.title = q(".pm__title");
    this.title.id = titleId;
    root.setAttribute("aria-labelledby", titleId);
    this.dot = q(".pm__dot");
    this.status = q(".pm__status");
    this.locked = q(".pm__locked");
    this.lockedText = q(".pm__locked-text");
    this.scroller = q(".pm__transcript");
    this.older = q(".pm__older");
    this.lines = q(".pm__lines");
    this.typingLine = q(".pm__typing");
    this.input = /** @type {HTMLTextAreaElement} */ (q(".pm__input"));
    this.composer = new Composer(this.input, {
      onSend: (text) => this.handlers.onSend(text),
      onTyping: (active) => this.handlers.onTyping(active),
      isLocked: () => this.isLocked,
    });
    this.sendButton = /** @type {HTMLButtonElement} */ (q(".pm__send"));
    this.emojiButton = /** @type {HTMLButtonElement} */ (q(".pm__emoji"));
    this.buzzButton = /** @type {HTMLButtonElement} */ (q(".pm__buzz"));
    this.safetyButton = /** @type {HTMLButtonElement} */ (q(".pm__safety"));
    /** @type {Map<string, {sig: string, node: HTMLElement}>} */
    this.nodes = new Map();
    /** @type {Note[]} */
    this.notes = [];
    this.noteCount = 0;
    this.buzzes = 0;
    this.name = peer;
    this.isLocked = false;
    this.bind();
  }

  bind() {
    const { handlers, root } = this;
    root.querySelector(".pm__min")?.addEventListener("click", () => handlers.onMinimize());
    root.querySelector(".pm__close")?.addEventListener("click", () => handlers.onClose());
    root.querySelector(".pm__unlock")?.addEventListener("click", () => handlers.onUnlock());
    this.safetyButton.addEventListener("click", () => handlers.onSafety());
    this.buzzButton.addEventListener("click", () => handlers.onBuzz());
    this.emojiButton.addEventListener("click", () => {
      if (this.emojiButton.getAttribute("aria-expanded") === "true") {
        return; // the picker closes itself on this click (outside it)
      }
      openPicker(this.emojiButton, (emoji) => this.insert(emoji));
    });
    root.addEventListener("pointerdown", () => handlers.onActivate());
    root.addEventListener("focusin", () => handlers.onActivate());
    root.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !event.defaultPrevented && event.target === this.input) {
        handlers.onMinimize();
      }
    });
    const form = /** @type {HTMLFormElement} */ (root.querySelector(".pm__compose"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.maxLength = MAX_INPUT;
    this.scroller.addEventListener("scroll", () => {
      if (this.scroller.scrollTop < TOP_SLACK_PX) {
        handlers.onOlder();
      }
    });
    this.bindDrag();
    new ResizeObserver(() => {
      if (this.root.isConnected && !this.root.hidden) {
        handlers.onGeometry();
      }
    }).observe(root);
  }

  /** Drag the window by its title bar (not on its buttons; not on a narrow screen). */
  bindDrag() {
    /** @type {{dx: number, dy: number, id: number} | null} */
    let drag = null;
    this.titlebar.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || /** @type {Element} */ (event.target).closest("button")) {
        return;
      }
      if (window.matchMedia("(max-width: 36rem)").matches) {
        return;
      }
      const box = this.root.getBoundingClientRect();
      drag = { dx: event.clientX - box.left, dy: event.clientY - box.top, id: event.pointerId };
      this.titlebar.setPointerCapture(event.pointerId);
      this.root.classList.add("pm--dragging");
      event.preventDefault();
    });
    this.titlebar.addEventListener("pointermove", (event) => {
      if (drag && event.pointerId === drag.id) {
        this.moveTo(event.clientX - drag.dx, event.clientY - drag.dy);
      }
    });
    const end = (/** @type {PointerEvent} */ event) => {
      if (drag && event.pointerId === drag.id) {
        drag = null;
        this.root.classList.remove("pm--dragging");
        this.handlers.onGeometry();
      }
    };
    this.titlebar.addEventListener("pointerup", end);
    this.titlebar.addEventListener("pointercancel", end);
  }

  /**
   * Put the window at (x, y), kept on screen with its title bar reachable.
   * @param {number} x
   * @param {number} y
   */
  moveTo(x, y) {
    const width = this.root.offsetWidth || 360;
    const maxX = Math.max(0, window.innerWidth - Math.min(width, 120));
    const maxY = Math.max(0, window.innerHeight - 80);
    this.root.style.left = `${Math.round(Math.min(Math.max(x, -width + 120), maxX))}px`;
    this.root.style.top = `${Math.round(Math.min(Math.max(y, 0), maxY))}px`;
  }

  /**
   * @param {number} width
   * @param {number} height
   */
  resizeTo(width, height) {
    this.root.style.width = `${Math.round(width)}px`;
    this.root.style.height = `${Math.round(height)}px`;
  }

  /** @returns {{x: number, y: number, w: number, h: number}} */
  geometry() {
    return {
      x: Number.parseInt(this.root.style.left, 10) || 0,
      y: Number.parseInt(this.root.style.top, 10) || 0,
      w: Number.parseInt(this.root.style.width, 10) || this.root.offsetWidth,
      h: Number.parseInt(this.root.style.height, 10) || this.root.offsetHeight,
    };
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

  /**
   * The buddy's name and presence.
   * @param {string} name
   * @param {string} state online | away | busy | offline
   * @param {string} statusText
   */
  setBuddy(name, state, statusText) {
    this.name = name;
    const title = name === this.peer ? name : `${name} (${this.peer})`;
    this.title.textContent = title;
    this.root.dataset.state = state;
    this.dot.className = `pm__dot presence-dot presence-dot--${state}`;
    const shown = { online: "Online", away: "Away", busy: "Busy", offline: "Offline" }[state];
    this.status.textContent = statusText ? `${shown ?? "Offline"} — ${statusText}` : (shown ?? "");
    this.input.setAttribute("aria-label", `Message to ${name}`);
    this.input.placeholder = `Type a message to ${name}…`;
    this.buzzButton.title = `BUZZ! ${name}: shake their window`;
  }

  /**
   * @param {boolean} locked
   * @param {string} text why, for people
   * @param {boolean} canUnlock show the Unlock button
   */
  setLocked(locked, text, canUnlock) {
    this.isLocked = locked;
    this.locked.hidden = !locked;
    this.lockedText.textContent = text;
    const unlock = /** @type {HTMLElement} */ (this.root.querySelector(".pm__unlock"));
    unlock.hidden = !canUnlock;
    this.root.dataset.locked = String(locked);
    this.input.disabled = locked;
    this.sendButton.disabled = locked;
    this.safetyButton.disabled = locked;
  }

  /**
   * @param {boolean} active
   * @param {string} name
   */
  setTyping(active, name) {
    this.typingLine.textContent = active ? `${name} is typing…` : "";
    this.root.dataset.typing = String(active);
  }

  /**
   * A line that is not a message, after the last line shown now.
   * @param {string} text
   * @param {Note["tone"]} [tone]
   * @param {Note["action"]} [action]
   * @param {Conversation} [conv]
   */
  note(text, tone = "info", action = null, conv = undefined) {
    const entries = conv ? transcript(conv) : [];
    const last = entries.length ? entries[entries.length - 1].key : null;
    this.noteCount += 1;
    this.notes.push({
      key: `n:${this.noteCount}`,
      text,
      tone,
      after: last,
      action,
      time: Date.now(),
    });
  }

  /** Shake the window (a BUZZ!). */
  shake() {
    this.buzzes += 1;
    this.root.dataset.buzzes = String(this.buzzes);
    this.root.classList.remove("pm--buzz");
    void this.root.offsetWidth; // restart the animation
    this.root.classList.add("pm--buzz");
    this.root.addEventListener(
      "animationend",
      () => this.root.classList.remove("pm--buzz"),
      { once: true },
    );
  }

  /** Whether the newest line is in view (new lines then keep it in view). */
  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < BOTTOM_SLACK_PX;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /**
   * Show the conversation.
   * @param {Conversation} conv
   */
  render(conv) {
    const stick = this.atBottom() || this.scroller.scrollHeight <= this.scroller.clientHeight;
    const anchor = this.firstVisible();
    const entries = transcript(conv);
    /** @type {Map<string | null, Note[]>} */
    const notesAfter = new Map();
    const keys = new Set(entries.map((e) => e.key));
    for (const note of this.notes) {
      const after = note.after !== null && keys.has(note.after) ? note.after : null;
      notesAfter.set(after, [...(notesAfter.get(after) ?? []), note]);
    }
    /** @type {HTMLElement[]} */
    const nodes = [];
    const alive = new Set();
    /**
     * A line, reused while its signature (what it shows) is the same.
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
    let previous = null;
    for (const entry of entries) {
      const tick = entry.sender === this.me ? tickOf(entry, conv) : "";
      const grouped =
        previous !== null &&
        previous.sender === entry.sender &&
        entry.time - previous.time < GROUP_MS;
      const sig = [
        entry.state,
        entry.text,
        entry.problem?.message ?? "",
        tick,
        entry.sendError,
        entry.id,
        grouped,
      ].join("\u0000");
      add(entry.key, sig, () => this.lineNode(entry, tick, grouped));
      previous = entry;
      if (notesAfter.has(entry.key)) {
        addNotes(entry.key);
        previous = null; // a line after a note says again who wrote it
      }
    }
    for (const key of [...this.nodes.keys()]) {
      if (!alive.has(key)) {
        this.nodes.delete(key);
      }
    }
    this.place(nodes);
    this.older.hidden = !(conv.loading && conv.history);
    this.older.textContent = conv.loading ? "Loading older messages…" : "";
    this.root.dataset.count = String(entries.length);
    this.root.dataset.hasMore = String(conv.hasMore);
    this.root.dataset.loading = String(conv.loading);
    const empty = !entries.length && !this.notes.length && conv.history && !conv.loading;
    this.root.classList.toggle("pm--empty", empty);
    if (stick) {
      this.scrollToBottom();
    } else if (anchor) {
      // Lines were put above: keep the one that was at the top where it was.
      const node = this.nodes.get(anchor.key)?.node;
      if (node) {
        this.scroller.scrollTop += node.offsetTop - anchor.offset;
      }
    }
    // Scrolled to the top while a page was still loading: that scroll was ignored, and no
    // other will come while the view stays there, so ask for the next page now.
    const s = this.scroller;
    if (
      conv.history &&
      conv.hasMore &&
      !conv.loading &&
      s.scrollHeight > s.clientHeight &&
      s.scrollTop < TOP_SLACK_PX
    ) {
      queueMicrotask(() => this.handlers.onOlder());
    }
  }

  /**
   * Put the lines in this order, touching only what changed: the transcript is a live
   * region, and a line taken out and put back would be read out again.
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

  /** The first line in view and its offset, to keep it there. */
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
   * @param {Entry} entry
   * @param {string} tick
   * @param {boolean} grouped the same sender as the line before, moments earlier
   */
  lineNode(entry, tick, grouped) {
    const mine = entry.sender === this.me;
    const who = mine ? this.myName : entry.sender === this.peer ? this.name : entry.sender;
    const line = el("li", {
      className: [
        "pm-line",
        mine ? "pm-line--mine" : "pm-line--theirs",
        grouped ? "pm-line--grouped" : "",
      ].join(" "),
    });
    if (entry.id !== null) {
      line.dataset.id = String(entry.id);
    }
    line.dataset.clientId = entry.clientId;
    line.dataset.state = entry.state;
    const when = new Date(entry.time);
    const time = el("time", {
      className: "pm-line__time",
      text: timeFormat.format(when),
      attrs: { datetime: when.toISOString(), title: dateFormat.format(when) },
    });
    const head = el("span", { className: "pm-line__head" }, [
      el("span", { className: "pm-line__who", text: who }),
      time,
    ]);
    if (!mine && entry.id !== null && entry.state === "open") {
      head.append(this.reportButton(entry, who));
    }
    const body = el("span", { className: "pm-line__text" });
    if (entry.state === "open") {
      body.append(renderText(entry.text));
    } else if (entry.state === "failed") {
      line.classList.add("pm-line--problem");
      body.append(
        el("span", {
          className: "pm-line__problem-icon",
          text: "⚠",
          attrs: { "aria-hidden": "true" },
        }),
        document.createTextNode(
          `This message could not be verified: ${entry.problem?.message ?? "unknown reason"}`,
        ),
      );
    } else if (entry.state === "locked") {
      line.classList.add("pm-line--locked");
      body.textContent = "🔒 Encrypted — unlock your keys to read it.";
    } else {
      line.classList.add("pm-line--opening");
      body.textContent = "Decrypting…";
    }
    line.append(head, body);
    if (mine) {
      const [glyph, label] = TICKS[/** @type {keyof typeof TICKS} */ (tick)] ?? ["", ""];
      line.dataset.tick = tick;
      const mark = el("span", {
        className: `pm-line__tick pm-line__tick--${tick}`,
        text: glyph,
        attrs: { title: label, "aria-label": label, role: "img" },
      });
      head.append(mark);
      if (entry.send === "failed") {
        const retry = el("button", {
          className: "pm-line__retry",
          text: "Retry",
          attrs: { type: "button" },
        });
        retry.addEventListener("click", () => this.handlers.onRetry(entry.clientId));
        line.append(
          el("span", { className: "pm-line__failed" }, [
            document.createTextNode(`Not sent: ${entry.sendError}. `),
            retry,
          ]),
        );
      }
    }
    return line;
  }

  /**
   * A message's small Report button: ui/report.js catches the event it sends (the decrypted
   * text goes along, but leaves the browser only if the user chooses to include it).
   * @param {Entry} entry
   * @param {string} who
   */
  reportButton(entry, who) {
    const button = el("button", {
      className: "pm-line__report",
      text: "Report",
      attrs: {
        type: "button",
        title: "Report this message to the moderators",
        "aria-label": `Report this message from ${who}`,
      },
    });
    button.addEventListener("click", () => {
      const detail = {
        kind: "dm",
        username: this.peer,
        name: this.name,
        messageId: entry.id,
        text: entry.text,
      };
      button.dispatchEvent(new CustomEvent("echochat:report", { bubbles: true, detail }));
    });
    return button;
  }

  /** @param {Note} note */
  noteNode(note) {
    const line = el("li", { className: `pm-line pm-line--note pm-line--${note.tone}` }, [
      el("span", { className: "pm-line__text", text: note.text }),
    ]);
    line.dataset.note = note.tone;
    if (note.action) {
      const { label, run } = note.action;
      const button = el("button", {
        className: "pm-line__action",
        text: label,
        attrs: { type: "button" },
      });
      button.addEventListener("click", run);
      line.append(button);
    }
    return line;
  }
}
