// @ts-check
/**
 * What the dialogs can do to the buddy list: each action calls the HTTP API and then
 * updates the state with the answer (the events that follow change nothing more). Also
 * where the folded groups are remembered (localStorage, per user).
 */

import * as net from "../net/buddies.js";
import * as buddies from "../state/buddies.js";

/** @typedef {import("../state/buddies.js").BuddyState} BuddyState */
/** @typedef {import("../state/store.js").Store<BuddyState>} BuddyStore */
/** @typedef {import("./dialogs.js").Actions} Actions */

/** @param {string} me */
function foldedKey(me) {
  return `echochat.folded.${me}`;
}

/** @param {string} me @returns {string[]} */
export function loadFolded(me) {
  try {
    const raw = JSON.parse(localStorage.getItem(foldedKey(me)) ?? "[]");
    return Array.isArray(raw) ? raw.filter((g) => typeof g === "string") : [];
  } catch {
    return [];
  }
}

/** @param {BuddyState} state */
export function saveFolded(state) {
  try {
    localStorage.setItem(foldedKey(state.me), JSON.stringify(state.folded));
  } catch {
    // storage disabled: folding lasts for this page only
  }
}

/**
 * @param {BuddyStore} store
 * @returns {Actions}
 */
export function listActions(store) {
  return {
    async sendRequest(username, message, group) {
      const request = await net.requestBuddy(username, message, group || null);
      if (request.from_username === store.get().me) {
        store.update((s) => buddies.applyRequest(s, request));
      } // else they had asked me first: the server accepted theirs, an event follows
    },
    async accept(id, group) {
      const buddy = await net.acceptRequest(id, group || null);
      store.update((s) => buddies.mergeBuddy(buddies.withoutRequest(s, id), buddy));
    },
    async decline(id) {
      await net.declineRequest(id);
      store.update((s) => buddies.withoutRequest(s, id));
    },
    async cancel(id) {
      await net.cancelRequest(id);
      store.update((s) => buddies.withoutRequest(s, id));
    },
    async move(username, group) {
      const buddy = await net.updateBuddy(username, { group });
      store.update((s) => buddies.mergeBuddy(s, buddy));
    },
    async createGroup(name) {
      const { groups } = await net.createGroup(name);
      store.update((s) => buddies.setGroups(s, groups));
    },
    async renameGroup(from, to) {
      const { groups } = await net.renameGroup(from, to);
      store.update((s) => buddies.renameGroup(s, from, to, groups));
      saveFolded(store.get());
    },
    async deleteGroup(name) {
      const { groups } = await net.deleteGroup(name);
      store.update((s) => buddies.deleteGroup(s, name, groups));
      saveFolded(store.get());
    },
    blocked: net.fetchBlocked,
    unblock: net.unblock,
  };
}
