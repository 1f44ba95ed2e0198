// @ts-check
/**
 * The realtime connection: one WebSocket to /ws per tab (docs/protocol.md).
 *
 * - Connects to `${origin}/ws` (the access cookie and the page's Origin authenticate it).
 *   The server greets with a `hello` event; the client answers with the `hello` op and
 *   then emits "ready" (with the server's hello data): the place to resync, since events
 *   sent while the socket was down are not replayed for buddies and presence.
 * - Ops are requests: `request(op, data)` resolves with the `ok` reply of the same `ref`,
 *   rejects with a {@link SocketError} on `err`, on a timeout, or when the socket drops.
 * - A `ping` op every `heartbeat` seconds; an unanswered ping counts as a dead connection.
 * - Drops are retried with exponential backoff and full jitter (0.5 s doubling, capped at
 *   30 s); at once when the browser comes back online, when the tab is shown again, or
 *   on `reconnectNow()`. Close 1013 (too slow) reconnects like any other drop.
 * - A failed upgrade is all a browser learns of a refusal (401/403 bodies are hidden from
 *   scripts), so after a failure before the socket opened the session is refreshed once
 *   (api.js `refreshSession`) before the next try. A refresh refused with 401 means the
 *   session is over: "unauthorized" is emitted and the socket stops.
 * - `kicked` (session revoked, banned, signed out) stops the socket for good; the page
 *   decides where to go.
 * - Resuming (docs/protocol.md "Resuming"): the socket keeps a cursor, the highest direct
 *   message id it has handed on. The `hello` op carries it (and this browser's device id);
 *   the server replays the `dm.message` events after it before the `ok`, and while the
 *   `ok` says `more`, `hello` is sent again with the new cursor. During that replay the
 *   cursor moves only with the `ok` replies (live events may interleave and would skip the
 *   rest); afterwards every `dm.message` moves it. Without a cursor (a fresh page) the `ok`
 *   gives the starting one. Listeners de-duplicate by id. Rooms the same way: `hello`
 *   always carries `rooms: {"<id>": cursor}` (empty on a fresh page); the server replays
 *   the `room.message` events after each, and its `ok` gives the cursor of every room I am
 *   in (the newest id for a room not named); afterwards every `room.message` moves its
 *   room's cursor.
 * - `resync` (docs/protocol.md "Lost wake-ups"): the server lost wake-ups for this socket.
 *   What to resume from is settled against the cursors held when it arrives: reason
 *   "publish" names cursors, and only those I have then count (a socket without a DM
 *   cursor keeps none, rooms I do not track are ignored); reason "bus" means my own
 *   cursors as they are at that moment. The cursors go down to that (never up) when the
 *   next `hello` round starts, so live events meanwhile cannot skip the loss. Then the
 *   same `hello` rounds as after a reconnect, on the open socket, and "resynced" is
 *   emitted: the place to refresh what is never replayed, like after "ready", but with the
 *   socket's requests still in flight (nothing is to be sent again). A "publish" resync
 *   (a few users) runs at once; a "bus" one (every socket of a busy process at once) first
 *   waits a random 0 .. {@link RESYNC_JITTER_MS}, so the process is not stampeded.
 *   Never two replays at once: a `resync` during the wait or a replay merges its lowering
 *   (the lowest wins; a "publish" one ends the wait), and during a replay runs one more
 *   round after it (a single "resynced", or none when the replay was a connection's first:
 *   its "ready" refreshes everything).
 * - A `hello` refused with `invalid_input` means the server does not take my cursors: the
 *   socket starts afresh from the newest. Any other failure (busy, unavailable, timeout,
 *   a drop) gives up on the connection; the reconnect resumes from the same cursors.
 *
 * Emits: "status" ({@link SocketStatus}), "ready" (hello data, after the replay),
 * "resynced" (resync data, after its replay), "event" ({type, data}), one emit per event
 * type ("presence", "buddy.request", "dm.message", ...), "kicked", "unauthorized".
 */

import { ApiError, refreshSession } from "./api.js";
import { Emitter } from "./emitter.js";

export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;
const HELLO_TIMEOUT_MS = 10_000;
/** A connection that lived this long starts the backoff from scratch when it drops. */
const STABLE_MS = 10_000;
/** Client-side close code for a connection that stopped answering pings. */
const CLOSE_DEAD = 4000;
/** At most this many `hello` rounds of replay per connection (100 messages each). */
const MAX_REPLAY_ROUNDS = 1000;
/** A "bus" resync waits a uniform random delay below this before its replay (F1). */
export const RESYNC_JITTER_MS = 3_000;

/**
 * @typedef {object} SocketStatus
 * @property {"connecting" | "online" | "waiting" | "stopped"} state
 * @property {number} attempt failed tries since the last good connection
 * @property {number | null} retryAt when the next try starts (epoch ms), while waiting
 */

/** A refused op (`err` reply), a timeout (`timeout`) or a dropped socket (`disconnected`). */
export class SocketError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "SocketError";
    this.code = code;
  }
}

/**
 * The wait before try number `attempt` (0-based): "full jitter", a uniform random delay
 * below min(cap, base * 2^attempt), so reconnecting clients do not stampede together.
 * @param {number} attempt
 * @param {() => number} [random] in [0, 1)
 * @param {number} [base]
 * @param {number} [cap]
 */
export function backoffDelay(
  attempt,
  random = Math.random,
  base = BACKOFF_BASE_MS,
  cap = BACKOFF_CAP_MS,
) {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/**
 * The wait before the replay of a "bus" resync: uniform in [0, span) ms, so the sockets of
 * a process that lost wake-ups do not all replay and refetch at the same moment.
 * @param {() => number} [random] in [0, 1)
 * @param {number} [span]
 */
export function resyncDelay(random = Math.random, span = RESYNC_JITTER_MS) {
  return Math.floor(random() * span);
}

/**
 * The page's `?resync_delay=MS` (for tests): wait exactly MS ms (0 .. 60000) after a "bus"
 * resync instead of the random delay; undefined without a valid one.
 * @param {string} search location.search
 * @returns {(() => number) | undefined}
 */
export function resyncDelayFrom(search) {
  const raw = new URLSearchParams(search).get("resync_delay");
  const ms = raw === null || raw === "" ? Number.NaN : Number(raw);
  return Number.isInteger(ms) && ms >= 0 && ms <= 60_000 ? () => ms : undefined;
}

/**
 * A message id or cursor as the server sends them.
 * @param {unknown} value
 * @returns {value is number}
 */
function isId(value) {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** ws://host/ws for http://host, wss:// for https://. */
export function socketUrl(origin = window.location.origin) {
  return `${origin.replace(/^http/, "ws")}/ws`;
}

/**
 * @typedef {object} Pending
 * @property {(data: any) => void} resolve
 * @property {(error: SocketError) => void} reject
 * @property {number} timer
 */

export class Socket extends Emitter {
  /**
   * @param {{url?: string, refresh?: () => Promise<void>,
   *   presence?: () => ({state: string, status: string} | null),
   *   deviceId?: () => (string | null), resyncDelay?: () => number}} [options]
   *   `presence` gives the state this tab chose, sent with each (re)connect so buddies never
   *   see a flash of "online" before it is restored; `deviceId` this browser's E2EE device
   *   id, sent in the `hello` op when known; `resyncDelay` the wait (ms) before the replay of
   *   a "bus" resync (default {@link resyncDelay}).
   */
  constructor(options = {}) {
    super();
    this.url = options.url ?? socketUrl();
    this.presence = options.presence ?? (() => null);
    this.deviceId = options.deviceId ?? (() => null);
    this.resyncDelay = options.resyncDelay ?? (() => resyncDelay());
    /** @type {number | null} the highest direct message id handed on; null on a fresh page */
    this.cursor = null;
    /** True from the greeting until the replay is over: live ids do not move the cursor. */
    this.replaying = false;
    /**
     * Per room I am in, the highest room message id handed on (state/rooms.js sets the
     * rooms it knows; `hello` carries them as `rooms` and the replay moves them).
     * @type {Map<number, number>}
     */
    this.roomCursors = new Map();
    /**
     * What `resync` events asked to lower the cursors to, applied before the next `hello`
     * round (not during one: its `ok` would move them up again).
     * @type {{cursor: number | null, rooms: Map<number, number>} | null}
     */
    this.lowerTo = null;
    /** A `resync` came during the replay: one more round after it. */
    this.again = false;
    /** @type {number | undefined} a "bus" resync's wait before its replay */
    this.resyncTimer = undefined;
    this.refresh = options.refresh ?? refreshSession;
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {SocketStatus} */
    this.status = { state: "stopped", attempt: 0, retryAt: null };
    this.heartbeat = 25;
    this.ready = false;
    this.stopped = true;
    this.refreshed = false;
    this.readyAt = 0;
    this.counter = 0;
    /** @type {Map<string, Pending>} */
    this.pending = new Map();
    /** @type {number | undefined} */
    this.retryTimer = undefined;
    /** @type {number | undefined} */
    this.pingTimer = undefined;
    /** @type {number | undefined} */
    this.helloTimer = undefined;
    this.onOnline = () => this.reconnectNow();
    this.onVisible = () => {
      if (document.visibilityState === "visible") {
        this.reconnectNow(); // back to the tab: do not sit out a long backoff
      }
    };
  }

  start() {
    if (!this.stopped) {
      return;
    }
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    document.addEventListener("visibilitychange", this.onVisible);
    this.connect();
  }

  /** Close for good (page leaving, kicked, signed out). */
  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    document.removeEventListener("visibilitychange", this.onVisible);
    window.clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.dropped(ws);
    ws?.close(1000, "bye");
    this.setStatus("stopped", null);
  }

  /** Skip the rest of the backoff wait. */
  reconnectNow() {
    if (!this.stopped && !this.ws) {
      window.clearTimeout(this.retryTimer);
      this.connect();
    }
  }

  /**
   * Send an op and wait for its reply.
   * @param {string} op
   * @param {Record<string, unknown>} [data]
   * @param {number} [timeoutMs]
   * @returns {Promise<any>} the reply's data
   */
  request(op, data = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || (!this.ready && op !== "hello")) {
      return Promise.reject(new SocketError("not_connected", "not connected to the server"));
    }
    this.counter += 1;
    const ref = `c-${this.counter}`;
    return new Promise((resolve, reject) => {
      const timer = window.setTimeout(() => {
        this.pending.delete(ref);
        reject(new SocketError("timeout", `no answer to ${op} in time`));
      }, timeoutMs);
      this.pending.set(ref, { resolve, reject, timer });
      ws.send(JSON.stringify({ op, ref, data }));
    });
  }

  /**
   * @param {SocketStatus["state"]} state
   * @param {number | null} retryAt
   */
  setStatus(state, retryAt) {
    this.status = { state, attempt: this.status.attempt, retryAt };
    this.emit("status", { ...this.status });
  }

  /** The URL with this tab's chosen presence, if it has one. */
  connectUrl() {
    const chosen = this.presence();
    if (!chosen) {
      return this.url;
    }
    const query = new URLSearchParams({ state: chosen.state, status: chosen.status });
    return `${this.url}?${query}`;
  }

  connect() {
    this.setStatus("connecting", null);
    const ws = new WebSocket(this.connectUrl());
    this.ws = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
    });
    ws.addEventListener("message", (event) => this.onFrame(ws, event.data));
    ws.addEventListener("close", (event) => this.onClose(ws, event.code, opened));
    this.helloTimer = window.setTimeout(() => this.abandon(ws), HELLO_TIMEOUT_MS);
  }

  /**
   * @param {WebSocket} ws
   * @param {unknown} raw
   */
  onFrame(ws, raw) {
    if (ws !== this.ws || typeof raw !== "string") {
      return;
    }
    /** @type {any} */
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (frame?.op === "ok" || frame?.op === "err") {
      const waiting = this.pending.get(frame.ref);
      if (!waiting) {
        return;
      }
      this.pending.delete(frame.ref);
      window.clearTimeout(waiting.timer);
      if (frame.op === "ok") {
        waiting.resolve(frame.data ?? {});
      } else {
        const error = frame.error ?? {};
        waiting.reject(new SocketError(String(error.code ?? "error"), String(error.message ?? "")));
      }
      return;
    }
    if (frame?.op !== "ev" || typeof frame.type !== "string") {
      return;
    }
    if (frame.type === "dm.message" && !this.replaying) {
      const id = frame.data?.id;
      if (isId(id) && id > (this.cursor ?? 0)) {
        this.cursor = id;
      }
    }
    if (frame.type === "room.message" && !this.replaying) {
      this.moveRoomCursor(frame.data?.room, frame.data?.id);
    }
    if (frame.type === "hello") {
      this.onHello(ws, frame.data ?? {});
    } else if (frame.type === "resync") {
      this.onResync(ws, frame.data ?? {});
    } else if (frame.type === "kicked") {
      this.stop();
      this.emit("kicked", frame.data ?? {});
    } else {
      this.emit("event", { type: frame.type, data: frame.data ?? {} });
      this.emit(frame.type, frame.data ?? {});
    }
  }

  /**
   * @param {WebSocket} ws
   * @param {any} hello
   */
  async onHello(ws, hello) {
    window.clearTimeout(this.helloTimer);
    if (typeof hello.heartbeat === "number" && hello.heartbeat > 0) {
      this.heartbeat = hello.heartbeat;
    }
    if (!(await this.replay(ws))) {
      return;
    }
    this.ready = true;
    this.refreshed = false;
    this.readyAt = Date.now();
    this.status.attempt = 0;
    this.setStatus("online", null);
    this.schedulePing(ws);
    this.emit("ready", hello);
  }

  /**
   * The server lost wake-ups for this socket: lower the cursors as it says and replay.
   * @param {WebSocket} ws
   * @param {any} data `{reason, cursor, rooms}`
   */
  async onResync(ws, data) {
    this.noteLowering(data);
    if (this.replaying) {
      this.again = true; // after the rounds running now
      return;
    }
    if (!this.ready) {
      return; // not greeted yet: the greeting's replay starts from the lowered cursors
    }
    if (data.reason !== "publish") {
      // Every socket of the process got this at once: spread the replays out. A resync
      // during the wait only merges its lowering (above).
      if (this.resyncTimer === undefined) {
        this.resyncTimer = window.setTimeout(() => {
          this.resyncTimer = undefined;
          this.resyncNow(ws, data);
        }, this.resyncDelay());
      }
      return;
    }
    // A few users lost a message: at once (covering a "bus" resync still waiting, if any).
    window.clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
    await this.resyncNow(ws, data);
  }

  /**
   * The replay of a resync, then "resynced".
   * @param {WebSocket} ws
   * @param {any} data
   */
  async resyncNow(ws, data) {
    if (ws !== this.ws || !this.ready) {
      return; // the connection dropped: the reconnect's replay takes the lowering
    }
    if (this.replaying) {
      this.again = true;
      return;
    }
    if (await this.replay(ws)) {
      this.emit("resynced", data);
    }
  }

  /**
   * Merge what a `resync` asks to lower the cursors to into {@link Socket#lowerTo}, against
   * the cursors held now: "publish" names cursors, and only those I have count; any other
   * reason ("bus") means my own cursors as they are now (live events may move them up
   * before the round starts).
   * @param {any} data `{reason, cursor, rooms}`
   */
  noteLowering(data) {
    const lower = this.lowerTo ?? { cursor: null, rooms: new Map() };
    const own = data.reason !== "publish";
    const named = data.rooms && typeof data.rooms === "object" ? data.rooms : {};
    /** @type {Array<[number, unknown]>} */
    const rooms = Object.entries(named).map(([room, cursor]) => [Number(room), cursor]);
    for (const [room, cursor] of own ? [...rooms, ...this.roomCursors] : rooms) {
      if (isId(cursor) && this.roomCursors.has(room)) {
        lower.rooms.set(room, Math.min(lower.rooms.get(room) ?? cursor, cursor));
      }
    }
    if (this.cursor !== null) {
      for (const cursor of own ? [data.cursor, this.cursor] : [data.cursor]) {
        if (isId(cursor)) {
          lower.cursor = Math.min(lower.cursor ?? cursor, cursor);
        }
      }
    }
    this.lowerTo = lower;
  }

  /**
   * `resume`, once more after each `resync` that came meanwhile; the cursors move only with
   * the `ok` replies throughout. A failed replay gives up on the connection.
   * @param {WebSocket} ws
   * @returns {Promise<boolean>} whether `ws` is still the connection
   */
  async replay(ws) {
    this.replaying = true;
    try {
      do {
        this.again = false;
        this.lowerCursors();
        await this.resume(ws);
      } while (this.again && ws === this.ws);
    } catch {
      this.abandon(ws);
      return false;
    } finally {
      this.replaying = false;
    }
    return ws === this.ws;
  }

  /** Apply what `resync` asked: cursors only go down, and only those I have. */
  lowerCursors() {
    const lower = this.lowerTo;
    this.lowerTo = null;
    if (!lower) {
      return;
    }
    if (lower.cursor !== null && this.cursor !== null) {
      this.cursor = Math.min(this.cursor, lower.cursor);
    }
    for (const [room, cursor] of lower.rooms) {
      const own = this.roomCursors.get(room);
      if (own !== undefined) {
        this.roomCursors.set(room, Math.min(own, cursor));
      }
    }
  }

  /**
   * The `hello` op, again while the server says there is `more` to replay.
   * @param {WebSocket} ws
   */
  async resume(ws) {
    for (let round = 0; round < MAX_REPLAY_ROUNDS && ws === this.ws; round++) {
      /** @type {Record<string, unknown>} */
      const data = {};
      if (this.cursor !== null) {
        data.cursor = this.cursor;
      }
      const device = this.deviceId();
      if (device) {
        data.device_id = device;
      }
      // Always named (even empty): the answer then gives every room of mine its cursor.
      data.rooms = Object.fromEntries(
        [...this.roomCursors].map(([room, cursor]) => [String(room), cursor]),
      );
      /** @type {any} */
      let reply;
      try {
        reply = await this.request("hello", data);
      } catch (error) {
        const refused = error instanceof SocketError && error.code === "invalid_input";
        if (refused && (this.cursor !== null || this.roomCursors.size)) {
          // The server does not take this cursor: start afresh (the windows refetch
          // their history and the counts on "ready"). Any other failure throws: the
          // connection is given up and the reconnect resumes from the same cursors.
          this.cursor = null;
          this.roomCursors.clear();
          continue;
        }
        throw error;
      }
      if (isId(reply.cursor)) {
        this.cursor = Math.max(this.cursor ?? 0, reply.cursor);
      }
      if (reply.rooms && typeof reply.rooms === "object") {
        // Every room I am in, and only those (a room I left is not in it).
        const before = this.roomCursors;
        this.roomCursors = new Map();
        for (const [room, cursor] of Object.entries(reply.rooms)) {
          this.roomCursors.set(Number(room), before.get(Number(room)) ?? 0);
          this.moveRoomCursor(Number(room), cursor);
        }
      }
      if (reply.more !== true) {
        return;
      }
    }
  }

  /**
   * @param {unknown} room
   * @param {unknown} id
   */
  moveRoomCursor(room, id) {
    if (isId(room) && isId(id) && id > (this.roomCursors.get(room) ?? 0)) {
      this.roomCursors.set(room, id);
    }
  }

  /** @param {WebSocket} ws */
  schedulePing(ws) {
    window.clearTimeout(this.pingTimer);
    this.pingTimer = window.setTimeout(async () => {
      if (ws !== this.ws) {
        return;
      }
      try {
        await this.request("ping", {}, this.heartbeat * 1000);
        this.schedulePing(ws);
      } catch (error) {
        if (error instanceof SocketError && error.code === "timeout") {
          this.abandon(ws); // no answer for a whole heartbeat: the connection is dead
        }
      }
    }, this.heartbeat * 1000);
  }

  /**
   * Give up on a connection that stopped answering, without waiting for its close.
   * @param {WebSocket} ws
   */
  abandon(ws) {
    if (ws === this.ws) {
      this.onClose(ws, CLOSE_DEAD, true);
      ws.close(CLOSE_DEAD, "no answer");
    }
  }

  /**
   * Forget `ws`: stop its timers and fail the requests waiting on it.
   * @param {WebSocket | null} ws
   */
  dropped(ws) {
    if (ws !== this.ws) {
      return;
    }
    this.ws = null;
    this.ready = false;
    window.clearTimeout(this.pingTimer);
    window.clearTimeout(this.helloTimer);
    window.clearTimeout(this.resyncTimer); // its lowering waits for the reconnect's replay
    this.resyncTimer = undefined;
    for (const [ref, waiting] of this.pending) {
      window.clearTimeout(waiting.timer);
      waiting.reject(new SocketError("disconnected", "the connection to the server dropped"));
      this.pending.delete(ref);
    }
  }

  /**
   * @param {WebSocket} ws
   * @param {number} code
   * @param {boolean} opened
   */
  async onClose(ws, code, opened) {
    if (ws !== this.ws) {
      return;
    }
    const lived = this.readyAt ? Date.now() - this.readyAt : 0;
    this.dropped(ws);
    this.readyAt = 0;
    if (this.stopped) {
      return;
    }
    if (lived >= STABLE_MS || code === 1013) {
      this.status.attempt = 0;
    }
    if (!opened && !this.refreshed) {
      // Maybe the access token expired: refresh once before the next try.
      this.setStatus("connecting", null);
      try {
        await this.refresh();
        this.refreshed = true;
      } catch (error) {
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
          this.stop();
          this.emit("unauthorized", error);
          return;
        }
        // The server is unreachable (or busy): wait and try again, refresh included.
      }
      if (this.stopped) {
        return;
      }
    }
    this.retryLater();
  }

  retryLater() {
    const delay = backoffDelay(this.status.attempt);
    this.status.attempt += 1;
    this.setStatus("waiting", Date.now() + delay);
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => {
      if (!this.stopped && !this.ws) {
        this.connect();
      }
    }, delay);
  }
}
