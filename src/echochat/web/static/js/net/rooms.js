// @ts-check
/**
 * The chat-room endpoints of the HTTP API (docs/protocol.md "Rooms and groups";
 * src/echochat/api/rooms.py and api/room_messages.py), one function each. Ids are numbers;
 * usernames go into paths encoded. Lists come back as the arrays inside the answers.
 */

import { api } from "./api.js";

const e = encodeURIComponent;

/**
 * The array under `key` of an answer (or the answer itself when it is an array).
 * @param {any} answer
 * @param {string} key
 * @returns {any[]}
 */
export function listOf(answer, key) {
  if (Array.isArray(answer)) {
    return answer;
  }
  const list = answer?.[key];
  return Array.isArray(list) ? list : [];
}

/** @returns {Promise<any[]>} `{id, slug, name, position}` in order */
export async function categories() {
  return listOf(await api("GET", "/rooms/categories"), "categories");
}

/**
 * Public rooms, with `member_count` and `online_count`.
 * @param {{category?: string | number | null, q?: string}} [filter]
 * @returns {Promise<any[]>}
 */
export async function browse(filter = {}) {
  const query = new URLSearchParams();
  if (filter.category !== undefined && filter.category !== null && filter.category !== "") {
    query.set("category", String(filter.category));
  }
  if (filter.q) {
    query.set("q", filter.q);
  }
  const suffix = query.size ? `?${query}` : "";
  return listOf(await api("GET", `/rooms${suffix}`), "rooms");
}

/** @returns {Promise<any[]>} my rooms and groups with `unread`, `last_message_id`, `role` */
export async function mine() {
  return listOf(await api("GET", "/rooms/mine"), "rooms");
}

/** @param {number} id */
export function room(id) {
  return api("GET", `/rooms/${id}`);
}

/**
 * A private group; I am its owner.
 * @param {{name: string, topic?: string, encrypted?: boolean}} body
 */
export function createGroup(body) {
  return api("POST", "/rooms", body);
}

/**
 * @param {number} id
 * @param {{name?: string, topic?: string}} body
 */
export function updateRoom(id, body) {
  return api("PATCH", `/rooms/${id}`, body);
}

/** @param {number} id */
export function deleteRoom(id) {
  return api("DELETE", `/rooms/${id}`);
}

/** @param {number} id */
export function join(id) {
  return api("POST", `/rooms/${id}/join`, {});
}

/** @param {number} id */
export function leave(id) {
  return api("POST", `/rooms/${id}/leave`, {});
}

/**
 * @param {number} id
 * @returns {Promise<any[]>} `{username, display_name, role, state, ...}`
 */
export async function members(id) {
  return listOf(await api("GET", `/rooms/${id}/members`), "members");
}

/**
 * @param {number} id
 * @param {string} username
 */
export function invite(id, username) {
  return api("POST", `/rooms/${id}/invites`, { username });
}

/** @returns {Promise<any[]>} invitations waiting for my answer */
export async function invites() {
  return listOf(await api("GET", "/invites"), "invites");
}

/**
 * @param {number} inviteId
 * @param {"accept" | "decline"} answer
 */
export function answerInvite(inviteId, answer) {
  return api("POST", `/invites/${inviteId}/${answer}`, {});
}

/**
 * @param {number} id
 * @param {string} username
 */
export function transferOwner(id, username) {
  return api("POST", `/rooms/${id}/owner`, { username });
}

/**
 * @param {number} id
 * @param {string} username
 * @param {"moderator" | "member"} role
 */
export function setRole(id, username, role) {
  return api("PATCH", `/rooms/${id}/members/${e(username)}`, { role });
}

/**
 * @param {number} id
 * @param {string} username
 * @param {number} minutes 0 lifts the mute
 */
export function mute(id, username, minutes) {
  return api("POST", `/rooms/${id}/mutes`, { username, minutes });
}

/**
 * @param {number} id
 * @param {string} username
 */
export function kick(id, username) {
  return api("POST", `/rooms/${id}/kick`, { username });
}

/**
 * @param {number} id
 * @param {string} username
 * @param {string} reason
 * @param {number | null} minutes null: until lifted
 */
export function ban(id, username, reason, minutes) {
  /** @type {Record<string, unknown>} */
  const body = { username, reason };
  if (minutes) {
    body.minutes = minutes;
  }
  return api("POST", `/rooms/${id}/bans`, body);
}

/**
 * @param {number} id
 * @param {string} username
 */
export function unban(id, username) {
  return api("DELETE", `/rooms/${id}/bans/${e(username)}`);
}

/**
 * A page of messages, in ascending id order: `{messages, has_more}`.
 * @param {number} id
 * @param {{before?: number, after?: number, limit?: number}} [query]
 */
export function messages(id, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value) {
      params.set(key, String(value));
    }
  }
  const suffix = params.size ? `?${params}` : "";
  return api("GET", `/rooms/${id}/messages${suffix}`);
}

/**
 * @param {number} id
 * @param {number} messageId
 */
export function deleteMessage(id, messageId) {
  return api("DELETE", `/rooms/${id}/messages/${messageId}`);
}
