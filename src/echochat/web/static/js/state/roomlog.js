// @ts-check
/**
 * A chat room's transcript as plain data, and the pure rules around it: a message is one
 * line however often it arrives (live, replayed after a reconnect, in a history page),
 * lines are in id order with my unacknowledged sends last, a deleted message goes away,
 * `@me` is a mention, ignored members are hidden. No DOM, no I/O: state/rooms.js feeds it,
 * ui/roomview.js shows it.
 */

/**
 * A room message as the server sends it (docs/protocol.md "Rooms and groups"): plain
 * rooms carry `text`, encrypted groups an `envelope`.
 * @typedef {object} RoomMessage
 * @property {number} id
 * @property {number} room
 * @property {string} sender
 * @property {string} [sender_display_name]
 * @property {string} client_id
 * @property {string} [text]
 * @property {Record<string, unknown>} [envelope]
 * @property {string} created_at
 * @property {boolean} [deleted]
 */

/**
 * One line of a room's transcript.
 * @typedef {object} Line
 * @property {string} key stable for rendering (`c:` + client id for my own sends)
 * @property {number | null} id null until my send is acknowledged
 * @property {string} clientId
 * @property {string} sender
 * @property {string} name how the sender is shown ("" : by the view, from the members)
 * @property {number} time epoch ms
 * @property {"open" | "opening" | "locked" | "failed"} state readable or not (encrypted groups)
 * @property {string} text
 * @property {string} problem why it could not be opened
 * @property {"sending" | "sent" | "failed" | null} send my sends only
 * @property {string} sendError
 * @property {boolean} mention it names me (`@me`)
 * @property {RoomMessage | null} message kept to open it later (encrypted groups)
 * @property {Record<string, unknown> | null} envelope my sealed envelope, until acknowledged
 */

/**
 * @typedef {object} Member
 * @property {string} username
 * @property {string} name
 * @property {"owner" | "moderator" | "member"} role
 * @property {string} state online | away | busy | offline
 * @property {number | null} mutedUntil epoch ms
 */

/**
 * @typedef {object} RoomLog
 * @property {number} room
 * @property {Map<number, Line>} byId
 * @property {Line[]} pending my sends not yet acknowledged, in the order typed
 * @property {Set<number>} deleted ids deleted (a late copy of one must not come back)
 * @property {Map<string, Member>} members
 * @property {boolean} membersLoaded
 * @property {Set<string>} typing who is typing now
 * @property {boolean} history the newest page was fetched
 * @property {boolean} hasMore older messages exist
 * @property {boolean} loading a page is on its way
 */

/** @param {number} room @returns {RoomLog} */
export function emptyLog(room) {
  return {
    room,
    byId: new Map(),
    pending: [],
    deleted: new Set(),
    members: new Map(),
    membersLoaded: false,
    typing: new Set(),
    history: false,
    hasMore: true,
    loading: false,
  };
}

/** @param {unknown} error @returns {string} its message, for people */
export function messageOf(error) {
  const e = /** @type {any} */ (error);
  return typeof e?.message === "string" && e.message ? e.message : String(error);
}

/** @param {unknown} value @returns {number} a positive safe integer, or 0 */
export function whole(value) {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0 ? value : 0;
}

/** @param {unknown} iso */
export function timeOf(iso) {
  const t = typeof iso === "string" ? Date.parse(iso) : Number.NaN;
  return Number.isNaN(t) ? Date.now() : t;
}

/** @param {unknown} value @returns {value is RoomMessage} */
export function isRoomMessage(value) {
  const m = /** @type {any} */ (value);
  return (
    m !== null &&
    typeof m === "object" &&
    whole(m.id) > 0 &&
    whole(roomOf(m)) > 0 &&
    typeof m.sender === "string" &&
    typeof m.client_id === "string"
  );
}

/**
 * The room id of an event or message (`room`, `room_id`, or `room: {id}`).
 * @param {any} data
 * @returns {number}
 */
export function roomOf(data) {
  const room = data?.room ?? data?.room_id;
  if (room && typeof room === "object") {
    return whole(room.id);
  }
  return whole(room);
}

/** @param {string} text */
function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\-]/gu, "\\$&");
}

/**
 * A pattern for `@username` as a word: not inside an e-mail address or a longer name.
 * @param {string} username
 */
export function mentionPattern(username) {
  return new RegExp(
    `(^|[^A-Za-z0-9_.@-])(@${escapeRegExp(username)})(?![A-Za-z0-9_-]|\\.[A-Za-z0-9_-])`,
    "giu",
  );
}

/**
 * Whether `text` mentions `username` (`@bob`, any case).
 * @param {string} text
 * @param {string} username
 */
export function mentions(text, username) {
  return Boolean(username) && mentionPattern(username).test(text);
}

/**
 * The text split around the mentions of `username`: `[{text, mention}]`.
 * @param {string} text
 * @param {string} username
 * @returns {{text: string, mention: boolean}[]}
 */
export function splitMentions(text, username) {
  /** @type {{text: string, mention: boolean}[]} */
  const out = [];
  let last = 0;
  for (const match of text.matchAll(mentionPattern(username))) {
    const start = (match.index ?? 0) + match[1].length;
    if (start > last) {
      out.push({ text: text.slice(last, start), mention: false });
    }
    out.push({ text: match[2], mention: true });
    last = start + match[2].length;
  }
  if (last < text.length) {
    out.push({ text: text.slice(last), mention: false });
  }
  return out;
}

/**
 * The transcript in order: acknowledged lines by id, then my pending sends.
 * @param {RoomLog} log
 * @param {Set<string>} [ignored] senders whose lines are hidden
 * @returns {Line[]}
 */
export function transcript(log, ignored) {
  const known = [...log.byId.values()].sort((a, b) => Number(a.id) - Number(b.id));
  const lines = [...known, ...log.pending];
  return ignored?.size ? lines.filter((line) => !ignored.has(line.sender)) : lines;
}

/**
 * A new line for a server message (not yet opened when it is encrypted).
 * @param {RoomMessage} message
 * @param {string} me
 * @returns {Line}
 */
export function lineOf(message, me) {
  const plain = typeof message.text === "string";
  const text = plain ? /** @type {string} */ (message.text) : "";
  return {
    key: `i:${message.id}`,
    id: message.id,
    clientId: message.client_id,
    sender: message.sender,
    name: message.sender_display_name || "",
    time: timeOf(message.created_at),
    state: plain ? "open" : "opening",
    text,
    problem: "",
    send: message.sender === me ? "sent" : null,
    sendError: "",
    mention: plain && message.sender !== me && mentions(text, me),
    message,
    envelope: null,
  };
}

/**
 * Merge a server message: a known id stays one line; my pending send with the same client
 * id becomes that line. Returns the line and whether it is new; null for a message that was
 * deleted meanwhile.
 * @param {RoomLog} log
 * @param {RoomMessage} message
 * @param {string} me
 * @returns {{line: Line, added: boolean} | null}
 */
export function merge(log, message, me) {
  if (log.deleted.has(message.id) || message.deleted) {
    log.deleted.add(message.id);
    log.byId.delete(message.id);
    return null;
  }
  const known = log.byId.get(message.id);
  if (known) {
    return { line: known, added: false };
  }
  if (message.sender === me) {
    const waiting = log.pending.find((line) => line.clientId === message.client_id);
    if (waiting) {
      log.pending = log.pending.filter((line) => line !== waiting);
      Object.assign(waiting, {
        id: message.id,
        time: timeOf(message.created_at),
        send: "sent",
        sendError: "",
        message,
        envelope: null,
      });
      log.byId.set(message.id, waiting);
      return { line: waiting, added: false };
    }
  }
  const line = lineOf(message, me);
  log.byId.set(message.id, line);
  return { line, added: true };
}

/**
 * Take a deleted message out (and remember it, so that a late copy stays out).
 * @param {RoomLog} log
 * @param {number} id
 * @returns {boolean} whether a line went away
 */
export function remove(log, id) {
  log.deleted.add(id);
  return log.byId.delete(id);
}

/** @param {RoomLog} log @returns {number} the highest id known */
export function newestId(log) {
  let newest = 0;
  for (const id of log.byId.keys()) {
    newest = Math.max(newest, id);
  }
  return newest;
}

/** @param {RoomLog} log @returns {number} the lowest id known, 0 when none */
export function oldestId(log) {
  let oldest = 0;
  for (const id of log.byId.keys()) {
    oldest = oldest ? Math.min(oldest, id) : id;
  }
  return oldest;
}

/**
 * A member from the server's shape.
 * @param {any} data
 * @returns {Member | null}
 */
export function memberOf(data) {
  const username = typeof data?.username === "string" ? data.username : null;
  if (!username) {
    return null;
  }
  const role = ["owner", "moderator"].includes(data.role) ? data.role : "member";
  const raw = typeof data.state === "string" ? data.state : data.presence;
  const state = ["online", "away", "busy"].includes(raw) ? raw : "offline";
  const muted = typeof data.muted_until === "string" ? Date.parse(data.muted_until) : Number.NaN;
  return {
    username,
    name: typeof data.display_name === "string" && data.display_name ? data.display_name : username,
    role,
    state,
    mutedUntil: Number.isNaN(muted) ? null : muted,
  };
}

const ROLE_ORDER = { owner: 0, moderator: 1, member: 2 };
const STATE_ORDER = { online: 0, busy: 1, away: 2, offline: 3 };

/**
 * Members for the list: owners and moderators first, then by presence, then by name.
 * @param {RoomLog} log
 * @returns {Member[]}
 */
export function memberList(log) {
  return [...log.members.values()].sort(
    (a, b) =>
      ROLE_ORDER[a.role] - ROLE_ORDER[b.role] ||
      (STATE_ORDER[/** @type {keyof typeof STATE_ORDER} */ (a.state)] ?? 3) -
        (STATE_ORDER[/** @type {keyof typeof STATE_ORDER} */ (b.state)] ?? 3) ||
      a.name.localeCompare(b.name),
  );
}

/**
 * "bob is typing…", "bob and carol are typing…", "Several people are typing…".
 * @param {string[]} names
 */
export function typingText(names) {
  if (!names.length) {
    return "";
  }
  if (names.length === 1) {
    return `${names[0]} is typing…`;
  }
  if (names.length === 2) {
    return `${names[0]} and ${names[1]} are typing…`;
  }
  return "Several people are typing…";
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayAndClock = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/**
 * A server's words with its ISO times ("muted until 2026-12-02T06:41+00:00") in the
 * user's local time: today's as "6:41 AM", others with the date.
 * @param {string} text
 * @param {number} [now]
 */
export function localTimes(text, now = Date.now()) {
  return text.replace(
    /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})/gu,
    (iso) => {
      const t = Date.parse(iso);
      if (Number.isNaN(t)) {
        return iso;
      }
      const sameDay = new Date(t).toDateString() === new Date(now).toDateString();
      return (sameDay ? clock : dayAndClock).format(t);
    },
  );
}

/**
 * Usernames the user chose to ignore, remembered per user in localStorage.
 * @param {string} me
 * @returns {Set<string>}
 */
export function loadIgnored(me) {
  try {
    const saved = JSON.parse(localStorage.getItem(`echochat.ignored.${me}`) ?? "[]");
    return new Set(Array.isArray(saved) ? saved.filter((x) => typeof x === "string") : []);
  } catch {
    return new Set();
  }
}

/**
 * @param {string} me
 * @param {Set<string>} ignored
 */
export function saveIgnored(me, ignored) {
  try {
    localStorage.setItem(`echochat.ignored.${me}`, JSON.stringify([...ignored].sort()));
  } catch {
    // storage disabled: the choice lasts for this page only
  }
}
