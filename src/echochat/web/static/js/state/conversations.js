// @ts-check
/**
 * Direct-message conversations as data: one transcript per peer, keyed by server id, and
 * what moves it (docs/protocol.md "Direct messages"). No DOM: ui/pms.js renders it.
 *
 * - Every message, whether live (`dm.message`), replayed after a reconnect or fetched as
 *   history, is merged by its server id: a message seen twice is one entry.
 * - Sending: an entry is made at once ("sending"), the text is sealed by the key session,
 *   then `dm.send` carries the envelope. When the socket is down or the answer never came,
 *   the entry stays pending and the *same envelope* (same `client_id`) is sent again on the
 *   next "ready": the server is idempotent by (sender, client_id), so a retry can never
 *   duplicate a message. A refusal (blocked, rate limited, ...) marks the entry failed,
 *   with the reason; the user may retry it.
 * - Opening: each message goes through `keys.openDm`; a failure is kept with its reason
 *   (never a silent "unable to decrypt"). While the keys are locked, messages wait as
 *   "locked" and are opened when the session unlocks.
 * - Acks: `dm.delivered` as soon as a peer's message has been opened here; `dm.read` when
 *   the window says the user sees it ({@link Conversations#markRead}).
 * - Watermarks: the peer's delivered/read marks give my messages their ticks; my own read
 *   mark (from any of my tabs: `dm.receipt`) clears the unread count.
 * - Counts: `offline.summary` at connect, then `GET /conversations` after every connect
 *   and resync (receipts are not replayed), then live messages.
 *
 * Emits: "change" ({peer}) when a transcript or its marks change, "counts" (no data) when
 * unread counts change, "incoming" ({peer, entry}) for a peer's new live message once
 * opened (or found unreadable, or waiting for the keys), "typing" ({peer, active}), "buzz"
 * ({peer}), "notice" ({peer, text, tone}).
 */

import { api } from "../net/api.js";
import { Emitter } from "../net/emitter.js";

/** @typedef {import("../net/socket.js").Socket} Socket */

/**
 * A server Message (docs/protocol.md "A Message").
 * @typedef {object} Message
 * @property {number} id
 * @property {string} conv
 * @property {string} sender
 * @property {string} recipient
 * @property {string} sender_device
 * @property {string} client_id
 * @property {string} created_at ISO 8601
 * @property {Record<string, unknown>} envelope
 */

/**
 * What the key session offers (state/keysession.js).
 * @typedef {object} Keys
 * @property {boolean} unlocked
 * @property {string | null} [deviceId]
 * @property {(peer: string, payload: {type: string, text: string}, clientId: string) => Promise<Record<string, unknown>>} sealDm
 * @property {(message: Message) => Promise<{payload: any}>} openDm
 * @property {() => void} promptUnlock
 * @property {(type: string, listener: (data: any) => void) => () => void} on
 */

/**
 * One line of a transcript.
 * @typedef {object} Entry
 * @property {string} key stable key for rendering (`c:` + client_id for my own sends)
 * @property {number | null} id the server id; null until the send is acknowledged
 * @property {string} clientId
 * @property {string} sender
 * @property {number} time epoch ms (the server's `created_at`, or when typed)
 * @property {"open" | "opening" | "locked" | "failed"} state whether the text is readable
 * @property {string} text the message text when `open`
 * @property {{code: string, message: string} | null} problem why it could not be opened
 * @property {"sending" | "sent" | "failed" | null} send my sends only
 * @property {string} sendError why a send failed
 * @property {Message | null} message the server's message (kept to open it later)
 * @property {Record<string, unknown> | null} envelope my sealed envelope, until acknowledged
 */

/**
 * @typedef {object} Conversation
 * @property {string} peer
 * @property {Map<number, Entry>} byId
 * @property {Entry[]} pending my sends not yet acknowledged, in the order typed
 * @property {number} unread the peer's messages above my read mark
 * @property {number} offline of those, the ones no device of mine had acknowledged at connect
 * @property {number} myDelivered
 * @property {number} myRead
 * @property {number} peerDelivered the peer's devices have my messages up to this id
 * @property {number} peerRead
 * @property {boolean} history newest page fetched
 * @property {boolean} hasMore older messages exist on the server
 * @property {boolean} loading a history page is on its way
 * @property {boolean} typing the peer is typing
 */

const PAGE = 50;
const TYPING_SHOWN_MS = 7000;
/** A send that got no answer (timeout) or could not be made (socket down) is retried. */
const RETRY_CODES = new Set(["disconnected", "not_connected", "timeout"]);

/**
 * @param {string} me
 * @param {Message} message
 * @returns {string} the other member of the message's conversation
 */
export function peerOf(me, message) {
  return message.sender === me ? message.recipient : message.sender;
}

/**
 * A message's tick from the peer's marks: "read", "delivered", "sent" (committed), or the
 * send's own state.
 * @param {Entry} entry
 * @param {{peerDelivered: number, peerRead: number}} marks
 * @returns {"sending" | "failed" | "sent" | "delivered" | "read"}
 */
export function tickOf(entry, marks) {
  if (entry.id === null) {
    return entry.send === "failed" ? "failed" : "sending";
  }
  if (entry.id <= marks.peerRead) {
    return "read";
  }
  if (entry.id <= marks.peerDelivered) {
    return "delivered";
  }
  return "sent";
}

/**
 * The transcript in order: acknowledged messages by id, then my pending sends.
 * @param {Conversation} conv
 * @returns {Entry[]}
 */
export function transcript(conv) {
  const known = [...conv.byId.values()].sort((a, b) => Number(a.id) - Number(b.id));
  return [...known, ...conv.pending];
}

/** @param {unknown} value @returns {number} */
function whole(value) {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0 ? value : 0;
}

/** @param {string} iso */
function timeOf(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? Date.now() : t;
}

/** @param {unknown} value @returns {value is Message} */
function isMessage(value) {
  const m = /** @type {any} */ (value);
  return (
    m !== null &&
    typeof m === "object" &&
    whole(m.id) > 0 &&
    typeof m.sender === "string" &&
    typeof m.recipient === "string" &&
    typeof m.client_id === "string"
  );
}

/** A client id: unique per sender, at most 64 characters (docs/e2ee.md). */
export function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `m-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export class Conversations extends Emitter {
  /**
   * @param {{me: string, socket: Socket, keys?: Keys | null}} options
   */
  constructor({ me, socket, keys = null }) {
    super();
    this.me = me;
    this.socket = socket;
    this.keys = keys;
    /** @type {Map<string, Conversation>} */
    this.convs = new Map();
    /** @type {Map<string, number>} peers whose delivered ack is due, with the id */
    this.deliveredDue = new Map();
    /** @type {Map<string, number>} */
    this.typingTimers = new Map();
    /** @type {Map<string, boolean>} peers whose changes are held (a page being merged) */
    this.quiet = new Map();
    /** @type {Map<string, string>} display names the server told (for non-buddies) */
    this.names = new Map();
    this.flushQueued = false;
    socket.on("dm.message", (data) => this.onMessage(data, true));
    socket.on("dm.receipt", (data) => this.onReceipt(data));
    socket.on("offline.summary", (data) => this.onSummary(data));
    socket.on("typing", (data) => this.onTyping(data));
    socket.on("buzz", (data) => {
      if (typeof data.username === "string") {
        this.emit("buzz", { peer: data.username });
      }
    });
    socket.on("ready", () => this.onReady(true));
    socket.on("resynced", () => this.onReady(false));
    keys?.on("state", (data) => {
      if (data?.unlocked) {
        this.openLocked();
      }
    });
  }

  get unlocked() {
    return Boolean(this.keys?.unlocked);
  }

  /**
   * The conversation with `peer` (made empty on first use).
   * @param {string} peer
   * @returns {Conversation}
   */
  get(peer) {
    let conv = this.convs.get(peer);
    if (!conv) {
      conv = {
        peer,
        byId: new Map(),
        pending: [],
        unread: 0,
        offline: 0,
        myDelivered: 0,
        myRead: 0,
        peerDelivered: 0,
        peerRead: 0,
        history: false,
        hasMore: true,
        loading: false,
        typing: false,
      };
      this.convs.set(peer, conv);
    }
    return conv;
  }

  /** @returns {Record<string, {unread: number, offline: number}>} per peer, non-zero only */
  counts() {
    /** @type {Record<string, {unread: number, offline: number}>} */
    const out = {};
    for (const conv of this.convs.values()) {
      if (conv.unread > 0) {
        out[conv.peer] = { unread: conv.unread, offline: Math.min(conv.offline, conv.unread) };
      }
    }
    return out;
  }

  /** @param {string} peer */
  changed(peer) {
    if (this.quiet.has(peer)) {
      this.quiet.set(peer, true); // told once the whole page is in
      return;
    }
    this.emit("change", { peer });
  }

  /**
   * Merge a page of history as one change: the window then puts the page above the lines
   * in view in one go, and keeps them where they were.
   * @param {string} peer
   * @param {unknown[]} messages
   * @returns {number} how many were new
   */
  mergePage(peer, messages) {
    const conv = this.get(peer);
    let added = 0;
    this.quiet.set(peer, false);
    try {
      for (const message of messages) {
        if (isMessage(message) && !conv.byId.has(message.id)) {
          added += 1;
        }
        this.onMessage(message, false);
      }
    } finally {
      const dirty = this.quiet.get(peer);
      this.quiet.delete(peer);
      if (dirty) {
        this.changed(peer);
      }
    }
    return added;
  }

  // --- receiving ----------------------------------------------------------------------------

  /**
   * A message from any source; returns its entry (new or known).
   * @param {unknown} data
   * @param {boolean} live from the socket (counts as unread, may notify)
   * @returns {Entry | null}
   */
  onMessage(data, live) {
    if (!isMessage(data)) {
      return null;
    }
    const message = data;
    const peer = peerOf(this.me, message);
    const conv = this.get(peer);
    const known = conv.byId.get(message.id);
    if (known) {
      return known;
    }
    const mine = message.sender === this.me;
    const waiting = mine ? conv.pending.find((e) => e.clientId === message.client_id) : undefined;
    if (waiting) {
      // My own send from this tab: its text is known, nothing to open.
      conv.pending = conv.pending.filter((e) => e !== waiting);
      Object.assign(waiting, {
        id: message.id,
        time: timeOf(message.created_at),
        send: "sent",
        sendError: "",
        message,
        envelope: null,
      });
      conv.byId.set(message.id, waiting);
      this.changed(peer);
      return waiting;
    }
    /** @type {Entry} */
    const entry = {
      key: `i:${message.id}`,
      id: message.id,
      clientId: message.client_id,
      sender: message.sender,
      time: timeOf(message.created_at),
      state: "opening",
      text: "",
      problem: null,
      send: mine ? "sent" : null,
      sendError: "",
      message,
      envelope: null,
    };
    conv.byId.set(message.id, entry);
    if (live && !mine && message.id > conv.myRead) {
      conv.unread += 1;
      this.emit("counts");
    }
    this.changed(peer);
    this.open(conv, entry, live);
    return entry;
  }

  /**
   * Open one entry with the key session.
   * @param {Conversation} conv
   * @param {Entry} entry
   * @param {boolean} live
   */
  async open(conv, entry, live) {
    const message = entry.message;
    if (!message) {
      return;
    }
    if (!this.keys || !this.keys.unlocked) {
      this.waitForKeys(conv, entry, live);
      return;
    }
    entry.state = "opening";
    try {
      const { payload } = await this.keys.openDm(message);
      if (payload?.type === "text" && typeof payload.text === "string") {
        entry.state = "open";
        entry.text = payload.text;
        entry.problem = null;
      } else {
        entry.state = "failed";
        entry.problem = {
          code: "unsupported",
          message: "this kind of message is not supported by this version of EchoChat",
        };
      }
    } catch (error) {
      const e = /** @type {any} */ (error);
      if (e?.code === "locked") {
        this.waitForKeys(conv, entry, live);
        return;
      }
      entry.state = "failed";
      entry.problem = {
        code: typeof e?.code === "string" ? e.code : "error",
        message: typeof e?.message === "string" && e.message ? e.message : String(error),
      };
    }
    if (entry.sender !== this.me) {
      // Due before the window hears of it: a window in view acknowledges reading at once,
      // and delivery goes first. (A message that fails to open has arrived all the same.)
      this.dueDelivered(conv.peer, /** @type {number} */ (entry.id));
    }
    this.changed(conv.peer);
    this.announce(conv, entry, live);
  }

  /**
   * The keys are locked: the message waits, and is opened on unlock.
   * @param {Conversation} conv
   * @param {Entry} entry
   * @param {boolean} live
   */
  waitForKeys(conv, entry, live) {
    entry.state = "locked";
    this.changed(conv.peer);
    this.announce(conv, entry, live);
  }

  /**
   * A peer's new live message (open, failed or waiting for the keys): "incoming".
   * @param {Conversation} conv
   * @param {Entry} entry
   * @param {boolean} live
   */
  announce(conv, entry, live) {
    if (live && entry.sender !== this.me && Number(entry.id) > conv.myRead) {
      this.emit("incoming", { peer: conv.peer, entry });
    }
  }

  /** Open every message that waited for the keys. */
  openLocked() {
    for (const conv of this.convs.values()) {
      for (const entry of conv.byId.values()) {
        if (entry.state === "locked") {
          this.open(conv, entry, false);
        }
      }
    }
  }

  /**
   * Acknowledge delivery (batched: one op per peer for what arrived together).
   * @param {string} peer
   * @param {number} id
   */
  dueDelivered(peer, id) {
    const conv = this.get(peer);
    if (id <= conv.myDelivered || id <= (this.deliveredDue.get(peer) ?? 0)) {
      return;
    }
    this.deliveredDue.set(peer, id);
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => this.flushDelivered());
    }
  }

  async flushDelivered() {
    this.flushQueued = false;
    const due = [...this.deliveredDue];
    this.deliveredDue.clear();
    for (const [peer, upto] of due) {
      const conv = this.get(peer);
      if (upto <= conv.myDelivered) {
        continue;
      }
      try {
        await this.socket.request("dm.delivered", { peer, upto });
        conv.myDelivered = Math.max(conv.myDelivered, upto);
      } catch {
        // Not connected: the message stays offline on the server; acked again after
        // "ready", when the history is fetched again.
      }
    }
  }

  /**
   * The user sees the conversation: acknowledge reading what is open in it.
   * @param {string} peer
   */
  async markRead(peer) {
    const conv = this.convs.get(peer);
    if (!conv) {
      return;
    }
    let upto = 0;
    for (const entry of conv.byId.values()) {
      if (entry.sender === peer && entry.state !== "locked" && entry.state !== "opening") {
        upto = Math.max(upto, Number(entry.id));
      }
    }
    if (upto <= conv.myRead) {
      return;
    }
    const before = conv.myRead;
    // The device had it before the user saw it: the sender sees both steps.
    const delivered = this.deliveredDue.has(peer) ? this.flushDelivered() : null;
    this.applyMyRead(conv, upto); // at once, so the badge goes away without a round trip
    try {
      await delivered;
      await this.socket.request("dm.read", { peer, upto });
    } catch {
      conv.myRead = Math.min(conv.myRead, before); // try again next time
    }
  }

  /**
   * @param {Conversation} conv
   * @param {number} upto
   */
  applyMyRead(conv, upto) {
    conv.myRead = Math.max(conv.myRead, upto);
    conv.myDelivered = Math.max(conv.myDelivered, upto);
    // What this tab knows above the mark; messages it never saw arrived before it loaded
    // and were counted by the server, which the mark covers once the newest known is read.
    let left = 0;
    for (const entry of conv.byId.values()) {
      if (entry.sender === conv.peer && Number(entry.id) > conv.myRead) {
        left += 1;
      }
    }
    this.setUnread(conv, left);
  }

  /**
   * @param {Conversation} conv
   * @param {number} unread
   */
  setUnread(conv, unread) {
    if (conv.unread !== unread) {
      conv.unread = unread;
      if (unread === 0) {
        conv.offline = 0;
      }
      this.emit("counts");
    }
  }

  /** @param {any} data a `dm.receipt` */
  onReceipt(data) {
    const upto = whole(data?.upto);
    if (!upto || (data.kind !== "delivered" && data.kind !== "read")) {
      return;
    }
    if (data.reader === this.me && typeof data.peer === "string") {
      // Me, on this or another device: my marks for that peer's messages.
      const conv = this.get(data.peer);
      if (data.kind === "read") {
        this.applyMyRead(conv, upto);
      } else {
        conv.myDelivered = Math.max(conv.myDelivered, upto);
        conv.offline = 0;
        this.emit("counts");
      }
      this.changed(data.peer);
    } else if (data.peer === this.me && typeof data.reader === "string") {
      // The peer acknowledged my messages: ticks.
      const conv = this.get(data.reader);
      if (data.kind === "read") {
        conv.peerRead = Math.max(conv.peerRead, upto);
      }
      conv.peerDelivered = Math.max(conv.peerDelivered, upto);
      this.changed(data.reader);
    }
  }

  /** @param {any} data an `offline.summary` */
  onSummary(data) {
    if (!Array.isArray(data?.senders)) {
      return;
    }
    for (const sender of data.senders) {
      const count = whole(sender?.count);
      if (typeof sender?.username === "string" && count) {
        if (typeof sender.display_name === "string" && sender.display_name) {
          this.names.set(sender.username, sender.display_name);
        }
        const conv = this.get(sender.username);
        conv.offline = count;
        conv.unread = Math.max(conv.unread, count);
      }
    }
    this.emit("counts");
  }

  /** @param {any} data a `typing` event */
  onTyping(data) {
    if (typeof data?.username !== "string") {
      return;
    }
    const peer = data.username;
    const conv = this.get(peer);
    window.clearTimeout(this.typingTimers.get(peer));
    const active = data.active === true;
    if (active) {
      // No "stopped" may ever come (their tab closed): the indicator fades by itself.
      this.typingTimers.set(
        peer,
        window.setTimeout(() => this.setTyping(conv, false), TYPING_SHOWN_MS),
      );
    }
    this.setTyping(conv, active);
  }

  /**
   * @param {Conversation} conv
   * @param {boolean} active
   */
  setTyping(conv, active) {
    if (conv.typing !== active) {
      conv.typing = active;
      this.emit("typing", { peer: conv.peer, active });
    }
  }

  /**
   * After every (re)connect: counts and marks again, then the sends that were waiting. After
   * a resync (the same socket, its sends still in flight) the counts and marks only.
   * @param {boolean} reconnected
   */
  async onReady(reconnected) {
    for (const conv of this.convs.values()) {
      this.setTyping(conv, false);
    }
    await this.refreshCounts();
    for (const conv of this.convs.values()) {
      if (conv.history) {
        // Marks are not replayed; the newest page brings them (and any ack left to send).
        this.loadNewest(conv.peer);
      }
      for (const entry of reconnected ? [...conv.pending] : []) {
        if (entry.send === "sending" && entry.envelope) {
          this.transmit(conv, entry);
        }
      }
    }
  }

  /**
   * `GET /conversations` (`{conversations: [{username, display_name, last_message_id,
   * unread, offline, my_read_upto, peer_delivered_upto, peer_read_upto, ...}]}`): unread
   * and offline counts and the marks.
   */
  async refreshCounts() {
    /** @type {any} */
    let answer;
    try {
      answer = await api("GET", "/conversations");
    } catch {
      return; // the counts from offline.summary and the live messages stay
    }
    const list = answer?.conversations;
    if (!Array.isArray(list)) {
      return;
    }
    for (const item of list) {
      const peer = item?.username;
      if (typeof peer !== "string") {
        continue;
      }
      if (typeof item.display_name === "string" && item.display_name) {
        this.names.set(peer, item.display_name);
      }
      const conv = this.get(peer);
      this.applyMarks(conv, item);
      conv.unread = whole(item.unread);
      conv.offline = whole(item.offline);
      // Messages that arrived after the server counted are above its newest id.
      const newest = whole(item.last_message_id);
      if (newest) {
        for (const entry of conv.byId.values()) {
          const id = Number(entry.id);
          if (entry.sender === peer && id > newest && id > conv.myRead) {
            conv.unread += 1;
          }
        }
      }
      this.changed(peer);
    }
    this.emit("counts");
  }

  /**
   * Marks from a history page or the conversation list (they only move forward).
   * @param {Conversation} conv
   * @param {any} marks
   */
  applyMarks(conv, marks) {
    conv.peerDelivered = Math.max(conv.peerDelivered, whole(marks?.peer_delivered_upto));
    conv.peerRead = Math.max(conv.peerRead, whole(marks?.peer_read_upto));
    conv.peerDelivered = Math.max(conv.peerDelivered, conv.peerRead);
    conv.myRead = Math.max(conv.myRead, whole(marks?.my_read_upto));
    conv.myDelivered = Math.max(conv.myDelivered, whole(marks?.my_delivered_upto), conv.myRead);
  }

  // --- history ----------------------------------------------------------------------------------

  /**
   * @param {string} peer
   * @param {Record<string, string>} query
   */
  async fetchPage(peer, query) {
    const params = new URLSearchParams({ limit: String(PAGE), ...query });
    return api("GET", `/dm/${encodeURIComponent(peer)}/messages?${params}`);
  }

  /**
   * The newest page (opening a window, and after each reconnect for open windows).
   * @param {string} peer
   */
  async loadNewest(peer) {
    const conv = this.get(peer);
    if (conv.loading) {
      return;
    }
    conv.loading = true;
    this.changed(peer);
    try {
      const page = await this.fetchPage(peer, {});
      this.applyMarks(conv, page);
      const first = !conv.history;
      conv.history = true;
      const messages = Array.isArray(page?.messages) ? page.messages : [];
      if (first) {
        conv.hasMore = Boolean(page?.has_more);
      }
      this.mergePage(peer, messages);
      this.applyMyRead(conv, conv.myRead);
    } catch (error) {
      if (/** @type {any} */ (error)?.status !== 0) {
        // (Unreachable server: the next "ready" loads it again, nothing to say.)
        this.emit("notice", {
          peer,
          text: `The conversation could not be loaded: ${messageOf(error)}`,
          tone: "error",
        });
      }
    } finally {
      conv.loading = false;
      this.changed(peer);
    }
  }

  /**
   * The page before the oldest message known (scrolling up).
   * @param {string} peer
   * @returns {Promise<number>} how many messages were added
   */
  async loadOlder(peer) {
    const conv = this.get(peer);
    if (conv.loading || !conv.hasMore) {
      return 0;
    }
    if (!conv.history) {
      await this.loadNewest(peer);
      return 0;
    }
    const ids = [...conv.byId.keys()];
    if (!ids.length) {
      conv.hasMore = false;
      return 0;
    }
    conv.loading = true;
    this.changed(peer);
    let added = 0;
    try {
      const page = await this.fetchPage(peer, { before: String(Math.min(...ids)) });
      this.applyMarks(conv, page);
      conv.hasMore = Boolean(page?.has_more);
      added = this.mergePage(peer, Array.isArray(page?.messages) ? page.messages : []);
    } catch (error) {
      this.emit("notice", {
        peer,
        text: `Older messages could not be loaded: ${messageOf(error)}`,
        tone: "error",
      });
    } finally {
      conv.loading = false;
      this.changed(peer);
    }
    return added;
  }

  // --- sending -----------------------------------------------------------------------------------

  /**
   * Seal and send a text. Resolves once it is committed, queued for a retry, or failed
   * (the entry says which).
   * @param {string} peer
   * @param {string} text
   * @returns {Promise<Entry>}
   */
  async send(peer, text) {
    const conv = this.get(peer);
    const clientId = newClientId();
    /** @type {Entry} */
    const entry = {
      key: `c:${clientId}`,
      id: null,
      clientId,
      sender: this.me,
      time: Date.now(),
      state: "open",
      text,
      problem: null,
      send: "sending",
      sendError: "",
      message: null,
      envelope: null,
    };
    conv.pending.push(entry);
    this.changed(peer);
    if (!this.keys || !this.keys.unlocked) {
      this.failSend(conv, entry, "your keys are locked: unlock them, then try again");
      return entry;
    }
    try {
      entry.envelope = await this.keys.sealDm(peer, { type: "text", text }, clientId);
    } catch (error) {
      this.failSend(conv, entry, messageOf(error));
      return entry;
    }
    await this.transmit(conv, entry);
    return entry;
  }

  /**
   * Try a failed send again (same envelope, same client id, when it was sealed).
   * @param {string} peer
   * @param {string} clientId
   */
  async retry(peer, clientId) {
    const conv = this.get(peer);
    const entry = conv.pending.find((e) => e.clientId === clientId);
    if (!entry || entry.send !== "failed") {
      return;
    }
    if (!entry.envelope) {
      conv.pending = conv.pending.filter((e) => e !== entry);
      this.changed(peer);
      await this.send(peer, entry.text);
      return;
    }
    entry.send = "sending";
    entry.sendError = "";
    this.changed(peer);
    await this.transmit(conv, entry);
  }

  /**
   * @param {Conversation} conv
   * @param {Entry} entry
   */
  async transmit(conv, entry) {
    if (entry.id !== null || !entry.envelope) {
      return;
    }
    try {
      const reply = await this.socket.request("dm.send", {
        to: conv.peer,
        envelope: entry.envelope,
      });
      if (isMessage(reply?.message)) {
        this.onMessage(reply.message, false); // matches the pending entry by client id
      }
    } catch (error) {
      const code = /** @type {any} */ (error)?.code;
      if (RETRY_CODES.has(code)) {
        return; // stays "sending": sent again with the same client id after "ready"
      }
      this.failSend(conv, entry, messageOf(error), code);
    }
  }

  /**
   * @param {Conversation} conv
   * @param {Entry} entry
   * @param {string} reason
   * @param {string} [code]
   */
  failSend(conv, entry, reason, code = "") {
    entry.send = "failed";
    entry.sendError =
      code === "rate_limited" ? "you are sending too fast; wait a moment and retry" : reason;
    this.changed(conv.peer);
  }

  /**
   * Tell the peer whether I am typing (not stored, buddies only: errors are ignored).
   * @param {string} peer
   * @param {boolean} active
   */
  async typing(peer, active) {
    try {
      await this.socket.request("typing", { to: peer, active });
    } catch {
      // not a buddy, or not connected: no indicator, nothing lost
    }
  }

  /**
   * BUZZ! the peer; rejects with the server's refusal (rate_limited, blocked, ...).
   * @param {string} peer
   */
  buzz(peer) {
    return this.socket.request("buzz", { to: peer });
  }
}

/** @param {unknown} error */
export function messageOf(error) {
  const e = /** @type {any} */ (error);
  return typeof e?.message === "string" && e.message ? e.message : String(error);
}
