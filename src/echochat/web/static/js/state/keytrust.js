// @ts-check
/**
 * The other users' keys as this browser knows them (docs/e2ee.md sections 3 and 12): their
 * verified directories (cached, fetched again when stale or told to), the identity key pinned
 * on first use, the device ids seen under it, and the verified marks. No DOM; the KeySession
 * (./keysession.js) owns one and turns what it finds into "trust" events.
 *
 * The policy is here: a different identity key than the pinned one is held apart until the
 * user accepts it (sealing and opening refuse meanwhile); a device that appears or goes away
 * under the pinned key is reported once; the server's `keys.changed` event only prompts a
 * fetch, every report comes from comparing a verified directory with what was seen.
 */

import * as e2ee from "../crypto/e2ee.js";
import { equalBytes } from "../crypto/encoding.js";
import * as keystore from "../crypto/keystore.js";
import { ApiError } from "../net/api.js";

const { E2EEError } = e2ee;

/** @typedef {import("../crypto/e2ee.js").KeyDirectory} KeyDirectory */
/** @typedef {import("../crypto/encoding.js").Bytes} Bytes */
/** @typedef {import("./keybackup.js").Api} Api */
/**
 * A user's verified directory as cached here, with the server's `created_at` per device.
 * @typedef {object} Cached
 * @property {KeyDirectory} directory
 * @property {Map<string, string>} createdAt
 * @property {number} at when fetched (ms)
 */
/**
 * @typedef {object} TrustInfo
 * @property {boolean} verified the user compared safety numbers for the key in use
 * @property {boolean} identityChanged the server shows another identity key than the pinned one
 * @property {{device_id: string, label: string, created_at: string, isNew: boolean}[]} devices
 */
/** @typedef {{peer: string, kind: string, device_id?: string}} TrustEvent */

/** A cached directory is fetched again after this long (keys.changed events refresh it sooner). */
export const DIRECTORY_TTL_MS = 60_000;
/** A buddy's device counts as new for this long after it was first seen. */
export const NEW_DEVICE_MS = 7 * 24 * 3600 * 1000;

/**
 * Human words for the refusals of `openEnvelope` (docs/e2ee.md 4.2) and the session's own
 * (`locked`, `no_keys`), by code.
 * @param {string} code
 * @param {string} sender
 * @returns {string}
 */
export function explainOpenError(code, sender) {
  const words = /** @type {Record<string, string>} */ ({
    malformed: "This message is damaged: it is not a well-formed encrypted message.",
    unsupported_version:
      "This message uses a newer encryption version than this page knows; reload the page.",
    wrong_conversation: "This message was moved here from another conversation; it is not shown.",
    wrong_sender: `This message does not come from ${sender}; it is not shown.`,
    identity_changed:
      `${sender}'s keys changed. Compare safety numbers, then accept the new keys to read ` +
      "and send messages again.",
    unknown_sender_device:
      `This message comes from a device ${sender} no longer lists, so it cannot be ` +
      "verified.",
    bad_device_signature:
      `The device that sent this message is not vouched for by ${sender}'s keys.`,
    bad_signature:
      "This message failed its signature check: it was changed on the way, or " +
      `${sender} did not send it.`,
    not_a_recipient:
      "This message was not encrypted for any of your keys (it was sent to a device whose " +
      "keys are not in your key backup).",
    wrap_failed: "This message's key could not be unlocked with your keys.",
    decrypt_failed: "This message could not be decrypted: it was changed on the way.",
    bad_payload: "This message decrypted to something that is not a message.",
    no_keys: `${sender} has not set up encryption yet.`,
    locked: "Your encryption keys are locked in this browser: unlock them to read messages.",
  });
  return words[code] ?? "This message could not be opened.";
}

/**
 * @param {string[]} ids
 * @returns {Record<string, number>} each id seen "from the start" (0)
 */
function baseline(ids) {
  return Object.fromEntries(ids.map((id) => [id, 0]));
}

export class Directories {
  /** @type {Map<string, Cached>} */
  #cache = new Map();
  /** @type {Map<string, Promise<Cached>>} */
  #fetching = new Map();
  /** Peers whose directory shows another identity key than the pinned one (that directory). */
  /** @type {Map<string, Cached>} */
  #changed = new Map();
  #me;
  #api;
  #report;
  #ownIdentity;
  #ownMismatch;

  /**
   * @param {object} options
   * @param {string} options.me the signed-in user
   * @param {Api} options.api
   * @param {(event: TrustEvent) => void} options.report a verified change of a peer's keys
   * @param {() => Bytes | null} options.ownIdentity the user's identity key (null while locked)
   * @param {() => void} options.ownMismatch the server shows another identity for the user
   */
  constructor({ me, api, report, ownIdentity, ownMismatch }) {
    this.#me = me;
    this.#api = api;
    this.#report = report;
    this.#ownIdentity = ownIdentity;
    this.#ownMismatch = ownMismatch;
  }

  /**
   * Forget cached directories (one user's, or all): the next use fetches them again.
   * @param {string} [username]
   */
  invalidate(username) {
    if (username === undefined) {
      this.#cache.clear();
    } else {
      this.#cache.delete(username);
    }
  }

  /**
   * A user's verified directory (cached; fetched when stale or `fresh`; concurrent callers
   * share one fetch).
   * @param {string} username
   * @param {boolean} [fresh]
   * @returns {Promise<Cached>}
   */
  async get(username, fresh = false) {
    const cached = this.#cache.get(username);
    if (!fresh && cached && Date.now() - cached.at < DIRECTORY_TTL_MS) {
      return cached;
    }
    let fetching = this.#fetching.get(username);
    if (!fetching) {
      fetching = this.#fetch(username).finally(() => this.#fetching.delete(username));
      this.#fetching.set(username, fetching);
    }
    return fetching;
  }

  /**
   * A peer's directory for sealing or opening: refused while a changed identity key waits for
   * the user's decision.
   * @param {string} peer
   * @param {boolean} [fresh]
   * @returns {Promise<KeyDirectory>}
   */
  async forPeer(peer, fresh = false) {
    const cached = await this.get(peer, fresh);
    if (this.#changed.has(peer)) {
      throw new E2EEError("identity_changed", explainOpenError("identity_changed", peer));
    }
    return cached.directory;
  }

  /**
   * @param {string} username
   * @returns {Promise<Cached>}
   */
  async #fetch(username) {
    let data;
    try {
      data = await this.#api("GET", `/keys/users/${encodeURIComponent(username)}`);
    } catch (error) {
      if (error instanceof ApiError && error.code === "user_not_found") {
        throw new E2EEError("no_keys", `${username} cannot receive encrypted messages from you.`);
      }
      throw error;
    }
    const directory = await e2ee.directoryFromServer(data, username, null);
    /** @type {Map<string, string>} */
    const createdAt = new Map();
    for (const d of Array.isArray(data.devices) ? data.devices : []) {
      if (d && typeof d.device_id === "string") {
        createdAt.set(d.device_id, String(d.created_at ?? ""));
      }
    }
    const cached = { directory, createdAt, at: Date.now() };
    if (username === this.#me) {
      const own = this.#ownIdentity();
      if (own && !equalBytes(directory.identityKey, own)) {
        this.#ownMismatch();
        throw new E2EEError("locked", explainOpenError("locked", username));
      }
    } else {
      await this.#compareWithPin(username, cached);
    }
    this.#cache.set(username, cached);
    return cached;
  }

  /**
   * Trust on first use, then compare: a changed identity key is held apart (and reported)
   * until the user accepts it; added and removed devices are reported once.
   * @param {string} peer
   * @param {Cached} cached
   */
  async #compareWithPin(peer, cached) {
    const { directory } = cached;
    const check = await keystore.checkPin(this.#me, peer, directory.identityKey);
    const ids = directory.devices.map((d) => d.deviceId);
    if (check.status === "changed") {
      const before = this.#changed.get(peer);
      this.#changed.set(peer, cached);
      if (!before || !equalBytes(before.directory.identityKey, directory.identityKey)) {
        this.#report({ peer, kind: "identity_changed" });
      }
      return;
    }
    this.#changed.delete(peer);
    if (check.status === "new" || check.pin.devices === undefined) {
      await keystore.setSeenDevices(this.#me, peer, baseline(ids));
      return;
    }
    const seen = { ...check.pin.devices };
    const added = ids.filter((id) => !(id in seen));
    const removed = Object.keys(seen).filter((id) => !ids.includes(id));
    if (!added.length && !removed.length) {
      return;
    }
    const now = Date.now();
    for (const id of added) {
      seen[id] = now;
    }
    for (const id of removed) {
      delete seen[id];
    }
    await keystore.setSeenDevices(this.#me, peer, seen);
    for (const id of added) {
      this.#report({ peer, kind: "device_added", device_id: id });
    }
    for (const id of removed) {
      this.#report({ peer, kind: "device_removed", device_id: id });
    }
  }

  /**
   * After a `keys.changed` event about `username`: fetch again if there is something to
   * compare with (a pin); a user never talked to is pinned on first use instead.
   * @param {string} username
   */
  async refresh(username) {
    this.invalidate(username);
    if (username === this.#me || (await keystore.getPin(this.#me, username)) === null) {
      return;
    }
    await this.get(username, true);
  }

  /**
   * What is known about `peer`'s keys, fetched fresh: verified or not, whether the identity
   * key changed, and the devices (new ones marked).
   * @param {string} peer
   * @returns {Promise<TrustInfo>}
   */
  async trust(peer) {
    const cached = await this.get(peer, true);
    const changed = this.#changed.get(peer);
    const shown = changed ?? cached;
    const pin = await keystore.getPin(this.#me, peer);
    const seen = changed ? {} : (pin?.devices ?? {});
    const now = Date.now();
    return {
      verified: Boolean(pin?.verified) && !changed,
      identityChanged: Boolean(changed),
      devices: shown.directory.devices.map((d) => {
        const first = seen[d.deviceId] ?? 0;
        return {
          device_id: d.deviceId,
          label: d.label,
          created_at: shown.createdAt.get(d.deviceId) ?? "",
          isNew: first > 0 && now - first < NEW_DEVICE_MS,
        };
      }),
    };
  }

  /**
   * The identity key `peer` has now as far as the server shows it (a changed one included,
   * so that its safety number can be compared before it is accepted).
   * @param {string} peer
   * @returns {Promise<Bytes>}
   */
  async currentIdentity(peer) {
    const cached = this.#changed.get(peer) ?? (await this.get(peer));
    return cached.directory.identityKey;
  }

  /**
   * Whether `peer`'s identity key changed and waits for the user's decision.
   * @param {string} peer
   */
  hasChanged(peer) {
    return this.#changed.has(peer);
  }

  /**
   * Mark `peer` verified or not (pinning the key first if it never was). Verifying a changed
   * key accepts it; true if that happened.
   * @param {string} peer
   * @param {boolean} verified
   */
  async setVerified(peer, verified) {
    if (this.#changed.has(peer)) {
      return this.accept(peer, verified);
    }
    if ((await keystore.getPin(this.#me, peer)) === null) {
      await this.get(peer, true);
    }
    await keystore.setVerified(this.#me, peer, verified);
    return false;
  }

  /**
   * Accept `peer`'s changed identity key: pin it (its devices as the new baseline), and seal
   * and open with it from now on. False if nothing was waiting.
   * @param {string} peer
   * @param {boolean} [verified]
   */
  async accept(peer, verified = false) {
    const changed = this.#changed.get(peer);
    if (!changed) {
      return false;
    }
    const { identityKey, devices } = changed.directory;
    await keystore.pinIdentity(this.#me, peer, identityKey, { verified });
    await keystore.setSeenDevices(this.#me, peer, baseline(devices.map((d) => d.deviceId)));
    this.#changed.delete(peer);
    this.#cache.set(peer, changed);
    return true;
  }
}
