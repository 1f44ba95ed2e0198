// @ts-check
/**
 * Sending to a room, and sealing and opening in an encrypted group: the half of
 * state/rooms.js that talks `room.send` and the key session.
 *
 * - A line appears at once ("sending"); `room.send` carries `{room, client_id, text}`, or
 *   in an encrypted group the envelope sealed by `keys.sealGroup` for every member device.
 *   When the socket is down or the answer never came, the line stays "sending" and the same
 *   client id goes again after the next "ready" (the server is idempotent by (sender,
 *   client_id)); a refusal marks it failed with the reason, and Retry sends it again.
 * - 409 `stale_members` (someone joined or left, or a device changed): the members and
 *   their keys are fetched again and the line sealed anew, twice at most.
 * - Opening: `keys.openGroup`; while the keys are locked lines wait as "locked" and open
 *   when the session unlocks.
 */

import * as log from "./roomlog.js";

/** @typedef {import("./rooms.js").Rooms} Rooms */
/** @typedef {import("./roomlog.js").Line} Line */

const RETRY_CODES = new Set(["disconnected", "not_connected", "timeout"]);

/** A client id: unique per sender, at most 64 characters. */
export function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `r-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export class RoomSender {
  /** @param {Rooms} rooms */
  constructor(rooms) {
    this.rooms = rooms;
  }

  /**
   * @param {number} id
   * @param {string} text
   * @returns {Promise<Line>}
   */
  async send(id, text) {
    const lines = this.rooms.log(id);
    const clientId = newClientId();
    /** @type {Line} */
    const line = {
      key: `c:${clientId}`,
      id: null,
      clientId,
      sender: this.rooms.me,
      name: this.rooms.me,
      time: Date.now(),
      state: "open",
      text,
      problem: "",
      send: "sending",
      sendError: "",
      mention: false,
      message: null,
      envelope: null,
    };
    lines.pending.push(line);
    this.rooms.emit("change", { room: id });
    if (this.rooms.rooms.get(id)?.encrypted) {
      try {
        line.envelope = await this.seal(id, text, clientId);
      } catch (error) {
        this.failSend(id, line, log.messageOf(error));
        return line;
      }
    }
    await this.transmit(id, line);
    return line;
  }

  /**
   * @param {number} id
   * @param {string} text
   * @param {string} clientId
   */
  async seal(id, text, clientId) {
    const keys = this.rooms.keys;
    if (!keys?.unlocked || !keys.sealGroup) {
      throw new Error("your keys are locked: unlock them, then try again");
    }
    const lines = this.rooms.log(id);
    if (!lines.membersLoaded) {
      await this.rooms.loadMembers(id);
    }
    return keys.sealGroup(id, [...lines.members.keys()], { type: "text", text }, clientId);
  }

  /**
   * @param {number} id
   * @param {string} clientId
   */
  async retry(id, clientId) {
    const lines = this.rooms.log(id);
    const line = lines.pending.find((l) => l.clientId === clientId);
    if (!line || line.send !== "failed") {
      return;
    }
    line.send = "sending";
    line.sendError = "";
    this.rooms.emit("change", { room: id });
    await this.transmit(id, line);
  }

  /**
   * @param {number} id
   * @param {Line} line
   * @param {number} [attempt] re-seal rounds after `stale_members`
   */
  async transmit(id, line, attempt = 0) {
    if (line.id !== null) {
      return;
    }
    const encrypted = this.rooms.rooms.get(id)?.encrypted === true;
    const data = encrypted
      ? { room: id, client_id: line.clientId, envelope: line.envelope }
      : { room: id, client_id: line.clientId, text: line.text };
    try {
      const reply = await this.rooms.socket.request("room.send", data);
      const message = reply?.message ?? reply;
      if (log.isRoomMessage(message)) {
        this.rooms.onMessage(message, false);
      }
    } catch (error) {
      const code = /** @type {any} */ (error)?.code;
      if (RETRY_CODES.has(code)) {
        return; // stays "sending": sent again with the same client id after "ready"
      }
      if (code === "stale_members" && encrypted && attempt < 2) {
        // Someone joined or left since the members were fetched: wrap for the members now.
        try {
          this.rooms.keys?.invalidate?.();
          await this.rooms.loadMembers(id);
          line.envelope = await this.seal(id, line.text, line.clientId);
        } catch (again) {
          this.failSend(id, line, log.messageOf(again));
          return;
        }
        await this.transmit(id, line, attempt + 1);
        return;
      }
      this.failSend(id, line, log.messageOf(error), code);
    }
  }

  /**
   * @param {number} id
   * @param {Line} line
   * @param {string} reason
   * @param {string} [code]
   */
  failSend(id, line, reason, code = "") {
    line.send = "failed";
    line.sendError =
      code === "rate_limited"
        ? "you are sending too fast; wait a moment and retry"
        : log.localTimes(reason.replace(/[.\s]+$/u, ""));
    this.rooms.emit("change", { room: id });
  }

  /**
   * @param {number} id
   * @param {boolean} active
   */
  async typing(id, active) {
    try {
      await this.rooms.socket.request("room.typing", { room: id, active });
    } catch {
      // not connected: no indicator, nothing lost
    }
  }

  // --- encrypted groups ---------------------------------------------------------------------------

  /**
   * Open an encrypted line with the key session.
   * @param {number} id
   * @param {Line} line
   * @param {boolean} live
   */
  async open(id, line, live) {
    const keys = this.rooms.keys;
    if (!line.message) {
      return;
    }
    if (!keys?.unlocked || !keys.openGroup) {
      line.state = "locked";
      this.rooms.emit("change", { room: id });
      this.rooms.announce(id, line, live);
      return;
    }
    try {
      const { payload } = await keys.openGroup(line.message);
      if (payload?.type === "text" && typeof payload.text === "string") {
        line.state = "open";
        line.text = payload.text;
        line.mention = line.sender !== this.rooms.me && log.mentions(payload.text, this.rooms.me);
      } else {
        line.state = "failed";
        line.problem = "this kind of message is not supported by this version of EchoChat";
      }
    } catch (error) {
      if (/** @type {any} */ (error)?.code === "locked") {
        line.state = "locked";
      } else {
        line.state = "failed";
        line.problem = log.messageOf(error);
      }
    }
    this.rooms.emit("change", { room: id });
    this.rooms.announce(id, line, live);
  }

  openLocked() {
    for (const [id, lines] of this.rooms.logs) {
      for (const line of lines.byId.values()) {
        if (line.state === "locked") {
          this.open(id, line, false);
        }
      }
    }
  }
}
