// @ts-check
/**
 * The buddy-list endpoints of the HTTP API (src/echochat/api/buddies.py), one function
 * each. Usernames and group names go into paths encoded.
 */

import { api } from "./api.js";

/** @typedef {import("../state/buddies.js").BuddyList} BuddyList */
/** @typedef {import("../state/buddies.js").Buddy} Buddy */
/** @typedef {import("../state/buddies.js").BuddyRequest} BuddyRequest */

const e = encodeURIComponent;

/** @returns {Promise<BuddyList>} groups, buddies with their presence, pending requests */
export function fetchBuddyList() {
  return api("GET", "/buddies");
}

/**
 * @param {string} username
 * @param {string} message
 * @param {string | null} group where they go once they accept
 * @returns {Promise<BuddyRequest>}
 */
export function requestBuddy(username, message, group) {
  return api("POST", "/buddies/requests", { username, message, group });
}

/**
 * @param {number} id
 * @param {string | null} group
 * @returns {Promise<Buddy>}
 */
export function acceptRequest(id, group) {
  return api("POST", `/buddies/requests/${id}/accept`, { group });
}

/** @param {number} id */
export function declineRequest(id) {
  return api("POST", `/buddies/requests/${id}/decline`);
}

/** @param {number} id a request I sent */
export function cancelRequest(id) {
  return api("DELETE", `/buddies/requests/${id}`);
}

/**
 * @param {string} username
 * @param {{group?: string, stealth?: boolean}} changes
 * @returns {Promise<Buddy>}
 */
export function updateBuddy(username, changes) {
  return api("PATCH", `/buddies/${e(username)}`, changes);
}

/** @param {string} username */
export function removeBuddy(username) {
  return api("DELETE", `/buddies/${e(username)}`);
}

/**
 * @param {string} name
 * @returns {Promise<{groups: string[]}>}
 */
export function createGroup(name) {
  return api("POST", "/buddies/groups", { name });
}

/**
 * @param {string} name
 * @param {string} newName
 * @returns {Promise<{groups: string[]}>}
 */
export function renameGroup(name, newName) {
  return api("PATCH", `/buddies/groups/${e(name)}`, { name: newName });
}

/**
 * @param {string} name its buddies move to the first remaining group
 * @returns {Promise<{groups: string[]}>}
 */
export function deleteGroup(name) {
  return api("DELETE", `/buddies/groups/${e(name)}`);
}

/** @returns {Promise<{username: string, display_name: string}[]>} */
export function fetchBlocked() {
  return api("GET", "/blocks");
}

/** @param {string} username */
export function block(username) {
  return api("POST", "/blocks", { username });
}

/** @param {string} username */
export function unblock(username) {
  return api("DELETE", `/blocks/${e(username)}`);
}
