// @ts-check
/**
 * My chat rooms and private groups as data (docs/protocol.md "Rooms and groups"): which
 * rooms I am in with their unread counts, the invitations waiting for me, and per room its
 * transcript, members and who is typing (state/roomlog.js). No DOM: ui/rooms.js shows it.
 *
 * - Membership is persistent: `GET /rooms/mine` after every (re)connect gives the rooms,
 *   my role, the unread counts and each room's newest id; `room.member` / `room.update` /
 *   `room.invite` events keep it live.
 * - Messages: live `room.message` events, the replay after a reconnect (net/socket.js
 *   sends a cursor per room in `hello`) and history pages are merged by id, so a message
 *   is one line however often it comes. After a reconnect or a resync the open rooms also
 *   fetch what came after their newest line, so nothing is missing even for a room joined
 *   meanwhile.
 * - Sending, sealing and opening in encrypted groups: state/roomsend.js (a line appears
 *   at once; the same client id goes again after a reconnect, never doubling a message).
 * - Reading: {@link Rooms#markRead} when the view says the user sees the room
 *   (`room.read`); the counts come down at once.
 * - Encrypted groups: lines are sealed and opened through the key session `keys`
 *   (state/keysession.js `sealGroup` / `openGroup`, conversation `group:<id>`); while the
 *   keys are locked lines wait as "locked".
 *
 * Emits: "rooms" (the list, a name, a count or my role changed), "invites", "change"
 * ({room}) when a transcript changes, "members" ({room}), "typing" ({room}), "incoming"
 * ({room, line}) for someone's new live message once readable, "gone" ({room, name,
 * reason}) when I left, was kicked or banned, or the group was deleted, "notice" ({room,
 * text, tone}).
 */

import * as net from "../net/rooms.js";
import { Emitter } from "../net/emitter.js";
import * as log from "./roomlog.js";
import { RoomSender } from "./roomsend.js";

/** @typedef {import("../net/socket.js").Socket} Socket */
/** @typedef {import("./roomlog.js").RoomLog} RoomLog */
/** @typedef {import("./roomlog.js").Line} Line */
/** @typedef {import("./roomlog.js").RoomMessage} RoomMessage */

/**
 * @typedef {object} Room
 * @property {number} id
 * @property {"public" | "group"} kind
 * @property {string} name
 * @property {string} topic
 * @property {boolean} encrypted
 * @property {"owner" | "moderator" | "member"} role
 * @property {number} unread
 * @property {number} newest the newest message id the server told
 * @property {number} mentions unread lines that mention me
 */

/**
 * @typedef {object} Invite
 * @property {number} id
 * @property {number} room
 * @property {string} roomName
 * @property {string} from
 * @property {string} fromName
 * @property {boolean} encrypted
 */

/**
 * What the key session offers for groups (state/keysession.js).
 * @typedef {object} GroupKeys
 * @property {boolean} unlocked
 * @property {(room: number, members: string[], payload: Record<string, unknown>, clientId: string) => Promise<Record<string, unknown>>} [sealGroup]
 * @property {(message: RoomMessage) => Promise<{payload: any}>} [openGroup]
 * @property {(usernames?: string) => void} [invalidate]
 * @property {(type: string, listener: (data: any) => void) => () => void} on
 */

const PAGE = 50;
const TYPING_SHOWN_MS = 7000;
/** At most one `room.read` per room this often while messages keep coming. */
const READ_GAP_MS = 1500;

/**
 * A room from the server's shape.
 * @param {any} data
 * @returns {Room | null}
 */
export function roomFrom(data) {
  const id = log.whole(data?.id);
  if (!id) {
    return null;
  }
  return {
    id,
    kind: data.kind === "group" ? "group" : "public",
    name: typeof data.name === "string" ? data.name : `Room ${id}`,
    topic: typeof data.topic === "string" ? data.topic : "",
    encrypted: data.encrypted === true,
    role: ["owner", "moderator"].includes(data.role) ? data.role : "member",
    unread: log.whole(data.unread),
    newest: log.whole(data.last_message_id),
    mentions: 0,
  };
}

/**
 * @param {any} data
 * @returns {Invite | null}
 */
export function inviteFrom(data) {
  const id = log.whole(data?.id);
  const room = log.roomOf(data);
  if (!id || !room) {
    return null;
  }
  const from = String(data.from_username ?? data.from ?? data.inviter ?? "");
  return {
    id,
    room,
    roomName: String(data.room_name ?? data.room?.name ?? `group ${room}`),
    from,
    fromName: String(data.from_display_name || from),
    encrypted: Boolean(data.encrypted ?? data.room?.encrypted),
  };
}

export class Rooms extends Emitter {
  /**
   * @param {{me: string, socket: Socket, keys?: GroupKeys | null}} options
   */
  constructor({ me, socket, keys = null }) {
    super();
    this.me = me;
    this.socket = socket;
    this.keys = keys;
    /** @type {Map<number, Room>} */
    this.rooms = new Map();
    /** @type {Map<number, RoomLog>} */
    this.logs = new Map();
    /** @type {Invite[]} */
    this.invites = [];
    this.ignored = log.loadIgnored(me);
    this.loaded = false;
    /** @type {Map<string, number>} `${room}/${username}` -> timer */
    this.typingTimers = new Map();
    /** @type {Map<number, number>} per room, the id up to which the user has seen it */
    this.readUpto = new Map();
    /** @type {Map<number, number>} per room, the mark last sent with `room.read` */
    this.readSent = new Map();
    /** @type {Map<number, number>} per room, when it was sent (epoch ms) */
    this.readSentAt = new Map();
    /** @type {Map<number, number>} per room, a trailing `room.read` waiting */
    this.readTimers = new Map();
    socket.on("room.message", (data) => this.onMessage(data, true));
    socket.on("room.message_deleted", (data) => this.onDeleted(data));
    socket.on("room.typing", (data) => this.onTyping(data));
    socket.on("room.member", (data) => this.onMember(data));
    socket.on("room.update", (data) => this.onUpdate(data));
    socket.on("room.invite", (data) => this.onInvite(data));
    socket.on("room.read", (data) => this.onRead(data));
    socket.on("ready", () => this.onReady(true));
    socket.on("resynced", () => this.onReady(false));
    /** Sending, sealing and opening (encrypted groups). */
    this.sender = new RoomSender(this);
    keys?.on("state", (data) => {
      if (data?.unlocked) {
        this.sender.openLocked();
      }
    });
  }

  /** @param {number} id */
  log(id) {
    let found = this.logs.get(id);
    if (!found) {
      found = log.emptyLog(id);
      this.logs.set(id, found);
    }
    return found;
  }

  /** @returns {Room[]} public rooms first, then groups, each by name */
  list() {
    return [...this.rooms.values()].sort((a, b) =>
      a.kind === b.kind ? a.name.localeCompare(b.name) : a.kind === "public" ? -1 : 1,
    );
  }

  totalUnread() {
    let total = 0;
    for (const room of this.rooms.values()) {
      total += room.unread;
    }
    return total;
  }

  // --- membership ------------------------------------------------------------------------------

  /** `GET /rooms/mine` and `GET /invites`: the list, the counts, the cursors. */
  async refresh() {
    const [rooms, invites] = await Promise.all([net.mine(), net.invites().catch(() => null)]);
    /** @type {Map<number, Room>} */
    const next = new Map();
    for (const data of rooms) {
      const room = roomFrom(data);
      if (!room) {
        continue;
      }
      const known = this.rooms.get(room.id);
      // Lines that came after the server counted are above its newest id.
      const lines = this.logs.get(room.id);
      if (lines) {
        for (const line of lines.byId.values()) {
          if (line.sender !== this.me && Number(line.id) > room.newest) {
            room.unread += 1;
          }
        }
      }
      room.mentions = room.unread ? (known?.mentions ?? 0) : 0;
      next.set(room.id, room);
      const readUpto = log.whole(data.read_upto);
      this.readUpto.set(room.id, Math.max(this.readUpto.get(room.id) ?? 0, readUpto));
      this.socket.roomCursors?.set(
        room.id,
        Math.max(this.socket.roomCursors.get(room.id) ?? 0, room.newest),
      );
    }
    for (const id of this.rooms.keys()) {
      if (!next.has(id)) {
        this.socket.roomCursors?.delete(id);
      }
    }
    this.rooms = next;
    this.loaded = true;
    this.emit("rooms");
    if (invites) {
      this.invites = invites.map(inviteFrom).filter((x) => x !== null);
      this.emit("invites");
    }
  }

  /**
   * Join a public room; resolves with the room.
   * @param {number} id
   */
  async join(id) {
    const answer = await net.join(id);
    await this.refresh();
    return this.rooms.get(id) ?? roomFrom(answer?.room ?? answer);
  }

  /** @param {number} id */
  async leave(id) {
    const name = this.rooms.get(id)?.name ?? "";
    await net.leave(id);
    this.forget(id, name, "left");
  }

  /**
   * @param {{name: string, topic?: string, encrypted?: boolean}} body
   * @returns {Promise<Room | null>}
   */
  async createGroup(body) {
    const answer = await net.createGroup(body);
    const made = roomFrom(answer?.room ?? answer);
    await this.refresh();
    return made ? (this.rooms.get(made.id) ?? made) : null;
  }

  /**
   * @param {number} inviteId
   * @param {"accept" | "decline"} answer
   */
  async answerInvite(inviteId, answer) {
    const invite = this.invites.find((i) => i.id === inviteId);
    await net.answerInvite(inviteId, answer);
    this.invites = this.invites.filter((i) => i.id !== inviteId);
    this.emit("invites");
    if (answer === "accept") {
      await this.refresh();
    }
    return invite ?? null;
  }

  /**
   * I am no longer in the room: drop it, say why.
   * @param {number} id
   * @param {string} name
   * @param {string} reason left | kick | ban | deleted
   */
  forget(id, name, reason) {
    const had = this.rooms.delete(id);
    this.logs.delete(id);
    this.socket.roomCursors?.delete(id);
    if (had) {
      this.emit("rooms");
      this.emit("gone", { room: id, name, reason });
    }
  }

  /**
   * @param {string} username
   * @param {boolean} ignore
   */
  setIgnored(username, ignore) {
    if (ignore) {
      this.ignored.add(username);
    } else {
      this.ignored.delete(username);
    }
    log.saveIgnored(this.me, this.ignored);
    for (const id of this.logs.keys()) {
      this.emit("change", { room: id });
      this.emit("members", { room: id });
    }
  }

  // --- events ------------------------------------------------------------------------------------

  /**
   * @param {unknown} data
   * @param {boolean} live from the socket (counts as unread, may notify)
   */
  onMessage(data, live) {
    const message = /** @type {any} */ (data)?.message ?? data;
    if (!log.isRoomMessage(message)) {
      return null;
    }
    const id = log.roomOf(message);
    const lines = this.log(id);
    const merged = log.merge(lines, { ...message, room: id }, this.me);
    if (!merged) {
      return null;
    }
    const { line, added } = merged;
    const room = this.rooms.get(id);
    if (room) {
      room.newest = Math.max(room.newest, message.id);
    }
    if (added) {
      if (line.state === "opening") {
        this.sender.open(id, line, live);
      } else {
        this.announce(id, line, live);
      }
    }
    this.emit("change", { room: id });
    return line;
  }

  /**
   * Someone's new live line is readable (or waits for the keys): counts and "incoming".
   * @param {number} id
   * @param {Line} line
   * @param {boolean} live
   */
  announce(id, line, live) {
    const room = this.rooms.get(id);
    if (!live || !room || line.sender === this.me || this.ignored.has(line.sender)) {
      return;
    }
    room.unread += 1;
    if (line.mention) {
      room.mentions += 1;
    }
    this.emit("rooms");
    this.emit("incoming", { room: id, line });
  }

  /** @param {any} data `{room, id}` */
  onDeleted(data) {
    const id = log.roomOf(data);
    const messageId = log.whole(data?.id ?? data?.message_id);
    if (!id || !messageId) {
      return;
    }
    const lines = this.log(id);
    const line = lines.byId.get(messageId);
    if (log.remove(lines, messageId)) {
      const room = this.rooms.get(id);
      if (room && line && line.sender !== this.me && room.unread > 0 && !this.seen(id, messageId)) {
        room.unread -= 1;
        this.emit("rooms");
      }
      this.emit("change", { room: id });
    }
  }

  /**
   * Whether a line was counted as read already (the view marks reading; see markRead).
   * @param {number} id
   * @param {number} messageId
   */
  seen(id, messageId) {
    return messageId <= (this.readUpto.get(id) ?? 0);
  }

  /** @param {any} data `{room, upto}`: I read the room on another tab or device */
  onRead(data) {
    const id = log.roomOf(data);
    const upto = log.whole(data?.upto);
    const room = this.rooms.get(id);
    if (!room || !upto) {
      return;
    }
    this.readUpto.set(id, Math.max(this.readUpto.get(id) ?? 0, upto));
    let left = 0;
    for (const line of this.logs.get(id)?.byId.values() ?? []) {
      if (line.sender !== this.me && Number(line.id) > upto) {
        left += 1;
      }
    }
    if (upto >= room.newest || left < room.unread) {
      room.unread = upto >= room.newest ? 0 : left;
      room.mentions = room.unread ? room.mentions : 0;
      this.emit("rooms");
    }
  }

  /** @param {any} data `{room, username, active}` */
  onTyping(data) {
    const id = log.roomOf(data);
    const username = typeof data?.username === "string" ? data.username : data?.user;
    if (!id || typeof username !== "string" || username === this.me) {
      return;
    }
    const lines = this.log(id);
    const key = `${id}/${username}`;
    window.clearTimeout(this.typingTimers.get(key));
    if (data.active === true) {
      lines.typing.add(username);
      // No "stopped" may ever come (their tab closed): the line fades by itself.
      this.typingTimers.set(
        key,
        window.setTimeout(() => {
          lines.typing.delete(username);
          this.emit("typing", { room: id });
        }, TYPING_SHOWN_MS),
      );
    } else {
      lines.typing.delete(username);
    }
    this.emit("typing", { room: id });
  }

  /** @param {any} data `{room, user, action, role?, ...}` */
  onMember(data) {
    const id = log.roomOf(data);
    const user = data?.user;
    const username = typeof user === "string" ? user : (user?.username ?? data?.username);
    if (!id || typeof username !== "string") {
      return;
    }
    const action = String(data.action ?? "");
    const room = this.rooms.get(id);
    if (username === this.me && ["leave", "kick", "ban"].includes(action)) {
      this.forget(id, room?.name ?? "", action === "leave" ? "left" : action);
      return;
    }
    if (username === this.me && action === "join" && !room) {
      this.refresh().catch(() => {});
      return;
    }
    if (username === this.me && action === "role" && room) {
      room.role = ["owner", "moderator"].includes(data.role) ? data.role : "member";
      this.emit("rooms");
    }
    const lines = this.logs.get(id);
    if (!lines) {
      return;
    }
    if (["leave", "kick", "ban"].includes(action)) {
      lines.members.delete(username);
      lines.typing.delete(username);
      this.emit("typing", { room: id });
    } else if (data.member) {
      const member = log.memberOf(data.member);
      if (member) {
        lines.members.set(username, member);
      }
    } else if (action === "mute") {
      const known = lines.members.get(username);
      if (known) {
        const until =
          typeof data.muted_until === "string" ? Date.parse(data.muted_until) : Number.NaN;
        known.mutedUntil = Number.isNaN(until) ? null : until;
      }
    }
    this.emit("members", { room: id, action, username });
  }

  /** @param {any} data `{room, name?, topic?, deleted?}` */
  onUpdate(data) {
    const id = log.roomOf(data);
    const room = this.rooms.get(id);
    if (!id || !room) {
      return;
    }
    const body = typeof data.room === "object" && data.room ? data.room : data;
    if (data.deleted === true || data.action === "deleted" || body.deleted === true) {
      this.forget(id, room.name, "deleted");
      return;
    }
    if (typeof body.name === "string") {
      room.name = body.name;
    }
    if (typeof body.topic === "string") {
      room.topic = body.topic;
    }
    this.emit("rooms");
  }

  /** @param {any} data an invitation (`{invite}` or the invite itself) */
  onInvite(data) {
    const body = data?.invite ?? data;
    if (body?.status && body.status !== "pending") {
      this.invites = this.invites.filter((i) => i.id !== body.id);
      this.emit("invites");
      return;
    }
    const invite = inviteFrom(body);
    if (invite && !this.invites.some((i) => i.id === invite.id)) {
      if (invite.from === this.me) {
        return; // my own invitation to someone else
      }
      this.invites = [...this.invites, invite];
      this.emit("invites");
    }
  }

  /**
   * After every (re)connect: the list again, gaps filled, then the sends that waited. After
   * a resync (the same socket, its sends still in flight) the list and the gaps only.
   * @param {boolean} reconnected
   */
  async onReady(reconnected) {
    for (const lines of this.logs.values()) {
      if (lines.typing.size) {
        lines.typing.clear();
        this.emit("typing", { room: lines.room });
      }
    }
    try {
      await this.refresh();
    } catch (error) {
      this.emit("notice", {
        room: 0,
        text: `Your rooms could not be loaded: ${log.messageOf(error)}`,
        tone: "error",
      });
      return;
    }
    for (const lines of this.logs.values()) {
      if (!this.rooms.has(lines.room)) {
        continue;
      }
      if (lines.history) {
        this.fillGap(lines.room);
        this.loadMembers(lines.room);
      }
      for (const line of reconnected ? [...lines.pending] : []) {
        if (line.send === "sending") {
          this.sender.transmit(lines.room, line);
        }
      }
    }
  }

  // --- history and members -------------------------------------------------------------------

  /**
   * Merge a page as one change.
   * @param {number} id
   * @param {unknown[]} messages
   */
  mergePage(id, messages) {
    let added = 0;
    const lines = this.log(id);
    for (const message of messages) {
      if (!log.isRoomMessage(message)) {
        continue;
      }
      const merged = log.merge(lines, { ...message, room: id }, this.me);
      if (merged?.added) {
        added += 1;
        if (merged.line.state === "opening") {
          this.sender.open(id, merged.line, false);
        }
      }
    }
    return added;
  }

  /** The newest page (opening a room). @param {number} id */
  async loadNewest(id) {
    const lines = this.log(id);
    if (lines.loading) {
      return;
    }
    lines.loading = true;
    this.emit("change", { room: id });
    try {
      const page = await net.messages(id, { limit: PAGE });
      const first = !lines.history;
      lines.history = true;
      if (first) {
        lines.hasMore = Boolean(page?.has_more);
      }
      this.mergePage(id, Array.isArray(page?.messages) ? page.messages : []);
    } catch (error) {
      this.emit("notice", {
        room: id,
        text: `The room could not be loaded: ${log.messageOf(error)}`,
        tone: "error",
      });
    } finally {
      lines.loading = false;
      this.emit("change", { room: id });
    }
  }

  /** What came after the newest line (after a reconnect). @param {number} id */
  async fillGap(id) {
    const lines = this.log(id);
    let after = log.newestId(lines);
    if (!after) {
      await this.loadNewest(id);
      return;
    }
    for (let round = 0; round < 20; round++) {
      /** @type {any} */
      let page;
      try {
        page = await net.messages(id, { after, limit: 200 });
      } catch {
        return; // the next "ready" tries again
      }
      const messages = Array.isArray(page?.messages) ? page.messages : [];
      this.mergePage(id, messages);
      this.emit("change", { room: id });
      const next = Math.max(after, ...messages.map((/** @type {any} */ m) => log.whole(m?.id)));
      if (!page?.has_more || next === after) {
        return;
      }
      after = next;
    }
  }

  /** Scrolling up. @param {number} id */
  async loadOlder(id) {
    const lines = this.log(id);
    if (lines.loading || !lines.hasMore || !lines.history) {
      return 0;
    }
    const before = log.oldestId(lines);
    if (!before) {
      lines.hasMore = false;
      return 0;
    }
    lines.loading = true;
    this.emit("change", { room: id });
    let added = 0;
    try {
      const page = await net.messages(id, { before, limit: PAGE });
      lines.hasMore = Boolean(page?.has_more);
      added = this.mergePage(id, Array.isArray(page?.messages) ? page.messages : []);
    } catch (error) {
      this.emit("notice", {
        room: id,
        text: `Older messages could not be loaded: ${log.messageOf(error)}`,
        tone: "error",
      });
    } finally {
      lines.loading = false;
      this.emit("change", { room: id });
    }
    return added;
  }

  /** @param {number} id */
  async loadMembers(id) {
    const lines = this.log(id);
    try {
      const list = await net.members(id);
      lines.members = new Map();
      for (const data of list) {
        const member = log.memberOf(data);
        if (member) {
          lines.members.set(member.username, member);
        }
      }
      lines.membersLoaded = true;
      this.emit("members", { room: id });
    } catch (error) {
      this.emit("notice", {
        room: id,
        text: `The member list could not be loaded: ${log.messageOf(error)}`,
        tone: "error",
      });
    }
  }

  /**
   * A buddy's presence changed: their dot in every member list.
   * @param {string} username
   * @param {string} state
   */
  presence(username, state) {
    for (const lines of this.logs.values()) {
      const member = lines.members.get(username);
      if (member && member.state !== state) {
        member.state = state;
        this.emit("members", { room: lines.room });
      }
    }
  }

  // --- reading ----------------------------------------------------------------------------------

  /**
   * The user sees the room: everything in it is read.
   * @param {number} id
   */
  markRead(id) {
    const room = this.rooms.get(id);
    const lines = this.logs.get(id);
    if (!room || !lines) {
      return;
    }
    const upto = Math.max(log.newestId(lines), room.newest);
    const before = this.readUpto.get(id) ?? 0;
    if (upto <= before && room.unread === 0) {
      return;
    }
    this.readUpto.set(id, Math.max(before, upto));
    if (room.unread || room.mentions) {
      room.unread = 0;
      room.mentions = 0;
      this.emit("rooms");
    }
    if (upto > (this.readSent.get(id) ?? 0)) {
      this.sendRead(id);
    }
  }

  /**
   * Tell the server (and my other tabs) how far I read: at once, then at most once per
   * READ_GAP_MS while messages keep coming into a room in view.
   * @param {number} id
   */
  sendRead(id) {
    if (this.readTimers.has(id)) {
      return; // a trailing send is due and takes the newest mark
    }
    const wait = (this.readSentAt.get(id) ?? 0) + READ_GAP_MS - Date.now();
    if (wait > 0) {
      this.readTimers.set(
        id,
        window.setTimeout(() => {
          this.readTimers.delete(id);
          this.sendRead(id);
        }, wait),
      );
      return;
    }
    const upto = this.readUpto.get(id) ?? 0;
    this.readSentAt.set(id, Date.now());
    this.readSent.set(id, upto);
    this.socket.request("room.read", { room: id, upto }).catch(() => {
      if ((this.readSent.get(id) ?? 0) === upto) {
        this.readSent.delete(id); // told again next time
      }
    });
  }

  // --- sending (state/roomsend.js) -----------------------------------------------------------

  /**
   * @param {number} id
   * @param {string} text
   */
  send(id, text) {
    return this.sender.send(id, text);
  }

  /**
   * @param {number} id
   * @param {string} clientId
   */
  retry(id, clientId) {
    return this.sender.retry(id, clientId);
  }

  /**
   * @param {number} id
   * @param {boolean} active
   */
  typing(id, active) {
    return this.sender.typing(id, active);
  }
}
