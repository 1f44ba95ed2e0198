// @ts-check
/**
 * This browser's end-to-end-encryption keys for the signed-in user, and everything the page
 * does with them: load them from IndexedDB, set them up at the first sign-in, restore them
 * from the key backup in a new browser, start fresh, seal and open direct messages, and keep
 * track of the buddies' identity keys and devices (docs/e2ee.md, sections 3, 4, 7 and 8;
 * the browser flows in section 12). No DOM: ui/keysetup.js shows the dialogs and calls
 * {@link KeySession#setUp}, {@link KeySession#restore} or {@link KeySession#startFresh}.
 *
 * Phases (`session.phase`, announced with the "state" event):
 * - `starting`: reading IndexedDB and asking the server what exists;
 * - `unlocked`: keys loaded, messages can be sealed and opened;
 * - `setup`: first sign-in, nothing exists yet: choose a recovery key or a passphrase;
 * - `restore`: a key backup exists but this browser has no keys: type its secret;
 * - `no_backup`: the account has keys (made elsewhere) but no backup: only "start fresh";
 * - `stale`: this browser's keys were replaced (the account started fresh elsewhere);
 * - `insecure`: not a secure context (https or localhost): WebCrypto is not available;
 * - `unavailable`: the server could not be asked (offline, rate-limited): `problem` says why.
 *
 * Events: "state" `{unlocked, phase}`; "prompt" (show the unlock/set-up dialog; from
 * {@link KeySession#promptUnlock}); "trust" `{peer, kind, device_id?}` with kind
 * `identity_changed`, `device_added`, `device_removed` (noticed by comparing the verified
 * directory with what was seen before, never on the server's word alone),
 * `identity_accepted` (the user accepted a changed key) or `verified` (`{peer, kind,
 * verified}`: marked or unmarked).
 */

import * as e2ee from "../crypto/e2ee.js";
import { b64d, b64e, equalBytes } from "../crypto/encoding.js";
import * as keystore from "../crypto/keystore.js";
import { api as defaultApi, ApiError } from "../net/api.js";
import { Emitter } from "../net/emitter.js";

const { E2EEError } = e2ee;

/** @typedef {import("../crypto/e2ee.js").KeyDirectory} KeyDirectory */
/** @typedef {import("../crypto/e2ee.js").Keyring} Keyring */
/** @typedef {import("../crypto/e2ee.js").Envelope} Envelope */
/** @typedef {(method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", path: string, body?: unknown) => Promise<any>} Api */
/**
 * @typedef {"starting" | "unlocked" | "setup" | "restore" | "no_backup" | "stale" | "insecure" | "unavailable"} Phase
 */
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

/** @typedef {{keyring: Keyring, deviceId: string, version: number}} Pending */

/** A cached directory is fetched again after this long (keys.changed events refresh it sooner). */
export const DIRECTORY_TTL_MS = 60_000;
/** A buddy's device counts as new for this long after it was first seen. */
export const NEW_DEVICE_MS = 7 * 24 * 3600 * 1000;
/** Tries at a backup write that another browser keeps overtaking (409 backup_conflict). */
const BACKUP_TRIES = 4;

/** @type {KeySession | null} */
let current = null;

/** The session the page created (for the PM windows' modules and for tests), or null. */
export function currentSession() {
  return current;
}

/**
 * Human words for the refusals of `openEnvelope` (docs/e2ee.md 4.2), by code.
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
      `This message comes from a device ${sender} no longer lists, so it cannot be verified.`,
    bad_device_signature: `The device that sent this message is not vouched for by ${sender}'s keys.`,
    bad_signature: `This message failed its signature check: it was changed on the way, or ${sender} did not send it.`,
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

/** A short label for this browser's device ("Chrome on Linux"), shown in buddies' lists. */
export function deviceLabel() {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua)
    ? "Edge"
    : /Firefox\//.test(ua)
      ? "Firefox"
      : /Chrom(e|ium)\//.test(ua)
        ? "Chrome"
        : /Safari\//.test(ua)
          ? "Safari"
          : "Browser";
  const os = /Android/.test(ua)
    ? "Android"
    : /iPhone|iPad/.test(ua)
      ? "iOS"
      : /Mac OS X/.test(ua)
        ? "macOS"
        : /Windows/.test(ua)
          ? "Windows"
          : /Linux/.test(ua)
            ? "Linux"
            : "";
  return os ? `${browser} on ${os}` : browser;
}

export class KeySession extends Emitter {
  /** @type {Keyring | null} */
  #keyring = null;
  /** @type {string | null} */
  #deviceId = null;
  /** @type {Map<string, Cached>} */
  #cache = new Map();
  /** @type {Map<string, Promise<Cached>>} */
  #fetching = new Map();
  /** Buddies whose directory shows another identity key than the pinned one (the new directory). */
  /** @type {Map<string, Cached>} */
  #changed = new Map();
  /** @type {{blob: string, version: number} | null} the backup as downloaded for a restore */
  #backup = null;
  /** @type {number | null} the version of the backup as last read or written */
  #backupVersion = null;
  /** @type {Pending | null} set up (and backed up), not yet published */
  #pending = null;
  /** @type {(() => void) | null} */
  #resolveReady = null;
  /** @type {Promise<void>} */
  #ready;
  /** @type {string} */
  #me;
  /** @type {Api} */
  #api;

  /**
   * @param {string} me the signed-in username
   * @param {Api} [api] the HTTP API (net/api.js `api`)
   */
  constructor(me, api = defaultApi) {
    super();
    this.#me = me;
    this.#api = api;
    /** @type {Phase} */
    this.phase = "starting";
    /** Why the keys are not available (phase `unavailable`, `stale`, ...), for people. */
    this.problem = "";
    /** @type {number | null} seconds to wait (a 429 on the backup download) */
    this.retryAfter = null;
    this.#ready = new Promise((resolve) => {
      this.#resolveReady = () => resolve(undefined);
    });
    current = this;
  }

  get me() {
    return this.#me;
  }

  /** This browser's device id, or null while locked. */
  get deviceId() {
    return this.unlocked ? this.#deviceId : null;
  }

  get unlocked() {
    return this.phase === "unlocked";
  }

  /** Whether a backup exists that {@link KeySession#restore} would open. */
  get hasBackup() {
    return this.#backup !== null;
  }

  /** Resolves once keys are loaded (never rejects; waits as long as the keys stay locked). */
  ready() {
    return this.#ready;
  }

  /**
   * @param {Phase} phase
   * @param {string} [problem]
   */
  #setPhase(phase, problem = "") {
    this.phase = phase;
    this.problem = problem;
    if (phase === "unlocked") {
      this.retryAfter = null;
      this.#resolveReady?.();
    }
    this.emit("state", { unlocked: this.unlocked, phase });
  }

  /** Show the unlock (restore or set-up) dialog again, e.g. from a locked PM window. */
  promptUnlock() {
    this.emit("prompt", { phase: this.phase });
  }

  // --- starting: IndexedDB, then what the server has -----------------------------------------

  /**
   * Load the keys from IndexedDB; without them, find out whether this is a first sign-in
   * (`setup`), a new browser (`restore`) or an account without a backup (`no_backup`), and
   * ask for the dialog ("prompt"). Never rejects.
   */
  async start() {
    if (!window.isSecureContext || !globalThis.crypto?.subtle) {
      this.#setPhase(
        "insecure",
        "Encryption needs a secure connection: open EchoChat over https (or on localhost).",
      );
      this.promptUnlock();
      return;
    }
    /** @type {{keyring: Keyring, deviceId: string} | null} */
    let stored = null;
    try {
      stored = await keystore.loadKeys(this.#me);
    } catch (error) {
      console.error(error);
    }
    if (stored !== null) {
      this.#keyring = stored.keyring;
      this.#deviceId = stored.deviceId;
      this.#setPhase("unlocked");
      await this.#checkOwnKeys();
      return;
    }
    await this.#findBackup();
    if (!this.unlocked) {
      this.promptUnlock();
    }
  }

  /** Ask the server for the backup and the own directory: which dialog is needed. */
  async #findBackup() {
    this.#backup = null;
    this.retryAfter = null;
    try {
      const got = await this.#api("GET", "/keys/backup");
      this.#backup = { blob: String(got.blob), version: Number(got.version) };
      this.#backupVersion = this.#backup.version;
      this.#setPhase("restore");
      return;
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "no_backup") {
        this.#unavailable(error);
        return;
      }
    }
    this.#backupVersion = null;
    try {
      const own = await this.#api("GET", `/keys/users/${encodeURIComponent(this.#me)}`);
      this.#setPhase(own.identity_key ? "no_backup" : "setup");
    } catch (error) {
      this.#unavailable(error);
    }
  }

  /** @param {unknown} error */
  #unavailable(error) {
    if (error instanceof ApiError && error.status === 429) {
      this.retryAfter = error.retryAfter;
      this.#setPhase("unavailable", "Too many key-backup downloads for your account.");
    } else if (error instanceof ApiError) {
      this.#setPhase("unavailable", error.message);
    } else {
      console.error(error);
      this.#setPhase("unavailable", "Your keys could not be loaded; reload the page.");
    }
  }

  /** Ask the server again (the "Try again" of an `unavailable` dialog). */
  async retry() {
    this.#setPhase("starting");
    await this.start();
  }

  /**
   * With keys loaded from IndexedDB: are they still the account's? (After "start fresh" in
   * another browser they are not: lock, and say so.) Publishes this device again if the
   * directory lost it.
   */
  async #checkOwnKeys() {
    const keyring = /** @type {Keyring} */ (this.#keyring);
    const deviceId = /** @type {string} */ (this.#deviceId);
    let data;
    try {
      data = await this.#api("GET", `/keys/users/${encodeURIComponent(this.#me)}`);
    } catch {
      return; // offline: keep working with what is here; the next event checks again
    }
    if (!data.identity_key || !equalBytes(b64d(String(data.identity_key)), keyring.identityKey)) {
      this.#lockStale();
      return;
    }
    const listed = Array.isArray(data.devices)
      ? data.devices.some((/** @type {any} */ d) => d && d.device_id === deviceId)
      : false;
    if (!listed) {
      try {
        await this.#publish(keyring, deviceId, false);
      } catch (error) {
        console.error(error);
      }
    }
  }

  #lockStale() {
    this.#keyring = null;
    this.#cache.clear();
    keystore.deleteKeys(this.#me).catch((error) => console.error(error));
    const why =
      "Your encryption keys were replaced in another browser (you started fresh there). " +
      "Unlock the new keys with their recovery key or passphrase.";
    this.#setPhase("stale", why);
    this.#findBackup().then(() => {
      if (this.phase === "restore") {
        this.#setPhase("stale", why); // the backup to restore is there; say why it is needed
      }
      this.promptUnlock();
    });
  }

  // --- the three ways to get keys ------------------------------------------------------------

  /**
   * First sign-in: new keys for this account, backed up under `secret` (a recovery key from
   * {@link newRecoveryKey} or a passphrase of at least 8 characters), then published.
   * @param {string} secret
   */
  async setUp(secret) {
    if (this.#pending === null) {
      const keyring = await e2ee.Keyring.generate();
      const device = await keyring.addDevice();
      const blob = await e2ee.encryptBackup(keyring, secret, this.#me);
      let version;
      try {
        version = (await this.#api("PUT", "/keys/backup", { blob, expected_version: null }))
          .version;
      } catch (error) {
        if (error instanceof ApiError && error.code === "backup_conflict") {
          await this.#findBackup();
          throw new E2EEError(
            "backup_exists",
            "Your keys were just set up in another browser. Restore them here with the " +
              "recovery key or passphrase chosen there.",
          );
        }
        throw error;
      }
      this.#pending = { keyring, deviceId: device.deviceId, version };
    }
    await this.#finish(false);
  }

  /**
   * A new browser: open the key backup with `secret`, add this browser's device to the
   * keyring, write the backup back (merging with another browser's write on a conflict),
   * publish the device. A wrong secret fails with `decrypt_failed` and a clear message.
   * @param {string} secret
   */
  async restore(secret) {
    if (this.#pending === null) {
      if (this.#backup === null) {
        await this.#findBackup();
        if (this.#backup === null) {
          throw new E2EEError("no_backup", "There is no key backup to restore.");
        }
      }
      const keyring = await this.#open(this.#backup.blob, secret);
      const own = await this.#api("GET", `/keys/users/${encodeURIComponent(this.#me)}`);
      if (own.identity_key && !equalBytes(b64d(String(own.identity_key)), keyring.identityKey)) {
        throw new E2EEError(
          "stale_backup",
          "This backup holds older keys than the ones your account uses now. Start fresh, " +
            "or ask an administrator.",
        );
      }
      const device = await keyring.addDevice();
      const version = await this.#saveMerged(keyring, secret, this.#backup.version);
      this.#pending = { keyring, deviceId: device.deviceId, version };
    }
    await this.#finish(false);
  }

  /**
   * Start fresh: new keys replace the account's (old messages become unreadable, every old
   * device is removed, buddies are warned), backed up under `secret`.
   * @param {string} secret
   */
  async startFresh(secret) {
    const keyring = await e2ee.Keyring.generate();
    const device = await keyring.addDevice();
    const blob = await e2ee.encryptBackup(keyring, secret, this.#me);
    let expected = this.#backupVersion;
    let version = null;
    for (let tries = 0; version === null; tries += 1) {
      try {
        version = (await this.#api("PUT", "/keys/backup", { blob, expected_version: expected }))
          .version;
      } catch (error) {
        // Replacing is the point here: overwrite whatever version is there now.
        if (tries < BACKUP_TRIES && error instanceof ApiError && error.code === "backup_conflict") {
          const latest = error.details.version;
          expected = typeof latest === "number" ? latest : null;
          continue;
        }
        throw error;
      }
    }
    this.#pending = { keyring, deviceId: device.deviceId, version };
    await this.#finish(true);
  }

  /**
   * Open a backup blob; a wrong secret says so.
   * @param {string} blob
   * @param {string} secret
   */
  async #open(blob, secret) {
    try {
      return await e2ee.decryptBackup(blob, secret, this.#me);
    } catch (error) {
      if (error instanceof E2EEError && error.code === "decrypt_failed") {
        throw new E2EEError(
          "decrypt_failed",
          "That is not the recovery key or passphrase of your key backup. Check it and try again.",
        );
      }
      throw error;
    }
  }

  /**
   * Write the backup of `keyring` as a compare-and-set on `expected`; when another browser
   * wrote first (409 backup_conflict), download theirs, merge it in and try again
   * (docs/e2ee.md 8.4). The new version.
   * @param {Keyring} keyring
   * @param {string} secret
   * @param {number | null} expected
   * @returns {Promise<number>}
   */
  async #saveMerged(keyring, secret, expected) {
    for (let tries = 0; ; tries += 1) {
      const blob = await e2ee.encryptBackup(keyring, secret, this.#me);
      try {
        const saved = await this.#api("PUT", "/keys/backup", { blob, expected_version: expected });
        return Number(saved.version);
      } catch (error) {
        if (tries >= BACKUP_TRIES || !(error instanceof ApiError) || error.code !== "backup_conflict") {
          throw error;
        }
      }
      const latest = await this.#api("GET", "/keys/backup");
      keyring.merge(await this.#open(String(latest.blob), secret));
      expected = Number(latest.version);
    }
  }

  /**
   * Publish the pending device, keep the keys in IndexedDB (non-extractable), unlock.
   * @param {boolean} reset replace the account's identity key (start fresh)
   */
  async #finish(reset) {
    const pending = /** @type {Pending} */ (this.#pending);
    await this.#publish(pending.keyring, pending.deviceId, reset);
    await keystore.saveKeys(this.#me, pending.keyring, pending.deviceId);
    pending.keyring.forgetPrivateBytes();
    this.#pending = null;
    this.#backup = null;
    this.#backupVersion = pending.version;
    this.#keyring = pending.keyring;
    this.#deviceId = pending.deviceId;
    this.#cache.delete(this.#me);
    this.#setPhase("unlocked");
  }

  /**
   * @param {Keyring} keyring
   * @param {string} deviceId
   * @param {boolean} reset
   */
  async #publish(keyring, deviceId, reset) {
    const body = await keyring.publishedDevice(this.#me, deviceId);
    await this.#api("PUT", `/keys/devices/${encodeURIComponent(deviceId)}`, {
      ...body,
      label: deviceLabel(),
      reset_identity: reset,
    });
  }

  /** A fresh recovery key to show once (the default secret of a backup). */
  newRecoveryKey() {
    return e2ee.newRecoveryKey();
  }

  // --- directories, pins and devices ---------------------------------------------------------

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
   * A user's verified directory (cached; fetched when stale or `fresh`). For buddies, the
   * identity key is pinned on first use and compared after; devices are compared with those
   * seen before ("trust" events).
   * @param {string} username
   * @param {boolean} [fresh]
   * @returns {Promise<Cached>}
   */
  async #directory(username, fresh = false) {
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
      const keyring = this.#keyring;
      if (keyring && !equalBytes(directory.identityKey, keyring.identityKey)) {
        this.#lockStale();
        throw new E2EEError("locked", explainOpenError("locked", username));
      }
    } else {
      await this.#compareWithPin(username, cached);
    }
    this.#cache.set(username, cached);
    return cached;
  }

  /**
   * Trust on first use, then compare: a changed identity key is held apart (and announced)
   * until the user accepts it; added and removed devices are announced once.
   * @param {string} peer
   * @param {Cached} cached
   */
  async #compareWithPin(peer, cached) {
    const { directory } = cached;
    const check = await keystore.checkPin(this.#me, peer, directory.identityKey);
    const ids = directory.devices.map((d) => d.deviceId);
    if (check.status === "new") {
      await keystore.setSeenDevices(this.#me, peer, Object.fromEntries(ids.map((id) => [id, 0])));
      this.#changed.delete(peer);
      return;
    }
    if (check.status === "changed") {
      const before = this.#changed.get(peer);
      this.#changed.set(peer, cached);
      if (!before || !equalBytes(before.directory.identityKey, directory.identityKey)) {
        this.emit("trust", { peer, kind: "identity_changed" });
      }
      return;
    }
    this.#changed.delete(peer);
    const seen = { ...(check.pin.devices ?? {}) };
    if (check.pin.devices === undefined) {
      await keystore.setSeenDevices(this.#me, peer, Object.fromEntries(ids.map((id) => [id, 0])));
      return;
    }
    const now = Date.now();
    const added = ids.filter((id) => !(id in seen));
    const removed = Object.keys(seen).filter((id) => !ids.includes(id));
    if (!added.length && !removed.length) {
      return;
    }
    for (const id of added) {
      seen[id] = now;
    }
    for (const id of removed) {
      delete seen[id];
    }
    await keystore.setSeenDevices(this.#me, peer, seen);
    for (const id of added) {
      this.emit("trust", { peer, kind: "device_added", device_id: id });
    }
    for (const id of removed) {
      this.emit("trust", { peer, kind: "device_removed", device_id: id });
    }
  }

  /**
   * The socket's `keys.changed` event: fetch that user's directory again (which announces
   * what changed, verified); for the user's own identity reset elsewhere, lock.
   * @param {{username?: unknown, reason?: unknown, device_id?: unknown}} data
   */
  async keysChanged(data) {
    const username = typeof data.username === "string" ? data.username : "";
    if (!username) {
      return;
    }
    this.#cache.delete(username);
    if (!this.unlocked) {
      return;
    }
    if (username === this.#me) {
      if (data.reason === "identity_reset") {
        await this.#checkOwnKeys();
      }
      return;
    }
    if ((await keystore.getPin(this.#me, username)) === null) {
      return; // never talked: nothing to compare with, the first use pins
    }
    try {
      await this.#directory(username, true);
    } catch (error) {
      console.error(error);
    }
  }

  /**
   * Listen to a page socket (net/socket.js): `keys.changed` events, and after a reconnect
   * (events may have been missed) every cached directory is fetched again when next used.
   * @param {{on: (type: string, listener: (data: any) => void) => () => void}} socket
   */
  attach(socket) {
    socket.on("event", ({ type, data }) => {
      if (type === "keys.changed") {
        this.keysChanged(data ?? {});
      }
    });
    socket.on("ready", () => this.invalidate());
  }

  // --- sealing and opening ---------------------------------------------------------------------

  #unlockedKeys() {
    if (!this.unlocked || this.#keyring === null || this.#deviceId === null) {
      throw new E2EEError("locked", explainOpenError("locked", this.#me));
    }
    return { keyring: this.#keyring, deviceId: this.#deviceId };
  }

  /**
   * A peer's directory for sealing or opening: refused while a changed identity key waits
   * for the user's decision.
   * @param {string} peer
   * @param {boolean} [fresh]
   */
  async #peer(peer, fresh = false) {
    const cached = await this.#directory(peer, fresh);
    if (this.#changed.has(peer)) {
      throw new E2EEError("identity_changed", explainOpenError("identity_changed", peer));
    }
    return cached.directory;
  }

  /**
   * The envelope of `payload` (e.g. `{type: "text", text}`) from this device to `peer`, for
   * every device of the peer and of the user (this one included), for `dm.send`.
   * @param {string} peer
   * @param {Record<string, unknown>} payload
   * @param {string} clientId
   * @returns {Promise<Envelope>}
   */
  async sealDm(peer, payload, clientId) {
    const { keyring, deviceId } = this.#unlockedKeys();
    const device = keyring.device(deviceId);
    const peerDir = await this.#peer(peer);
    let own = (await this.#directory(this.#me)).directory;
    if (!own.devices.some((d) => d.deviceId === deviceId)) {
      own = (await this.#directory(this.#me, true)).directory; // maybe just published
    }
    if (!own.devices.some((d) => d.deviceId === deviceId)) {
      await this.#publish(keyring, deviceId, false);
      own = (await this.#directory(this.#me, true)).directory;
    }
    const listed = own.devices.find((d) => d.deviceId === deviceId);
    if (
      listed &&
      !(equalBytes(listed.x25519, device.x25519Public) && equalBytes(listed.ed25519, device.ed25519Public))
    ) {
      throw new E2EEError("device_conflict", "The server lists this browser with other keys.");
    }
    if (!peerDir.devices.length) {
      throw new E2EEError("no_recipients", `${peer} has no device that can receive messages.`);
    }
    return e2ee.seal(e2ee.encodePayload(payload), {
      conv: e2ee.dmConversation(this.#me, peer),
      sender: this.#me,
      senderDevice: device,
      clientId,
      recipients: e2ee.recipientsFor(this.#me, deviceId, peerDir, own),
    });
  }

  /**
   * Verify and decrypt a server Message (`{sender, recipient, envelope, ...}`) with any of
   * the user's keys that has a wrap in it (the keyring holds every device the user had, so
   * history sent before this browser existed opens too). Throws E2EEError with a message
   * for people.
   * @param {{sender: string, recipient: string, envelope: unknown}} message
   * @returns {Promise<{payload: Record<string, unknown>}>}
   */
  async openDm(message) {
    const sender = String(message.sender);
    try {
      return await this.#openDm(message, false);
    } catch (error) {
      if (
        error instanceof E2EEError &&
        ["unknown_sender_device", "bad_device_signature"].includes(error.code)
      ) {
        try {
          return await this.#openDm(message, true); // a device added since the cache was filled
        } catch (again) {
          throw this.#explained(again, sender);
        }
      }
      throw this.#explained(error, sender);
    }
  }

  /**
   * @param {unknown} error
   * @param {string} sender
   */
  #explained(error, sender) {
    if (error instanceof E2EEError) {
      return new E2EEError(error.code, explainOpenError(error.code, sender));
    }
    return error;
  }

  /**
   * @param {{sender: string, recipient: string, envelope: unknown}} message
   * @param {boolean} fresh
   */
  async #openDm(message, fresh) {
    const { keyring, deviceId } = this.#unlockedKeys();
    const sender = String(message.sender);
    const other = sender === this.#me ? String(message.recipient) : sender;
    const expectedConv = e2ee.dmConversation(this.#me, other);
    let senderKeys;
    let trustedIdentity;
    if (sender === this.#me) {
      senderKeys = (await this.#directory(this.#me, fresh)).directory;
      trustedIdentity = keyring.identityKey;
    } else {
      senderKeys = await this.#peer(sender, fresh);
      trustedIdentity = senderKeys.identityKey;
    }
    const envelope = /** @type {any} */ (message.envelope);
    const entries = Array.isArray(envelope?.keys) ? envelope.keys : [];
    const devices = keyring.devices;
    const mine = entries
      .filter((/** @type {any} */ k) => k && k.user === this.#me && devices.has(k.device))
      .map((/** @type {any} */ k) => String(k.device));
    const chosen = mine.includes(deviceId) ? deviceId : (mine[0] ?? deviceId);
    const opened = await e2ee.openEnvelope(envelope, {
      expectedConv,
      meUser: this.#me,
      myDevice: keyring.device(chosen),
      senderKeys,
      trustedIdentity,
    });
    return { payload: opened.payload };
  }

  // --- trust: safety numbers, verification, accepting a change -------------------------------

  /**
   * What is known about `peer`'s keys, fetched fresh: verified or not, whether the identity
   * key changed, and the devices (new ones marked).
   * @param {string} peer
   * @returns {Promise<TrustInfo>}
   */
  async trust(peer) {
    this.#unlockedKeys();
    const cached = await this.#directory(peer, true);
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
   * The safety number of the user and `peer` for the identity key the server shows now (a
   * changed one included, so that it can be compared before it is accepted).
   * @param {string} peer
   * @returns {Promise<import("../crypto/e2ee.js").SafetyNumber>}
   */
  async safetyNumber(peer) {
    const { keyring } = this.#unlockedKeys();
    const cached = this.#changed.get(peer) ?? (await this.#directory(peer));
    return e2ee.safetyNumber(this.#me, keyring.identityKey, peer, cached.directory.identityKey);
  }

  /**
   * Mark `peer` verified (the safety numbers matched) or not. Verifying a changed key
   * accepts it.
   * @param {string} peer
   * @param {boolean} verified
   */
  async setVerified(peer, verified) {
    this.#unlockedKeys();
    if (this.#changed.has(peer)) {
      await this.acceptIdentity(peer, verified);
    } else {
      if ((await keystore.getPin(this.#me, peer)) === null) {
        await this.#directory(peer, true);
      }
      await keystore.setVerified(this.#me, peer, verified);
    }
    this.emit("trust", { peer, kind: "verified", verified });
  }

  /**
   * Accept `peer`'s changed identity key (after comparing safety numbers, ideally): pin it,
   * and seal and open with it from now on.
   * @param {string} peer
   * @param {boolean} [verified]
   */
  async acceptIdentity(peer, verified = false) {
    this.#unlockedKeys();
    const changed = this.#changed.get(peer);
    if (!changed) {
      return;
    }
    await keystore.pinIdentity(this.#me, peer, changed.directory.identityKey, { verified });
    await keystore.setSeenDevices(
      this.#me,
      peer,
      Object.fromEntries(changed.directory.devices.map((d) => [d.deviceId, 0])),
    );
    this.#changed.delete(peer);
    this.#cache.set(peer, changed);
    this.emit("trust", { peer, kind: "identity_accepted" });
  }

  /**
   * The pinned identity key of `peer` as base64url, or null (for displays and tests).
   * @param {string} peer
   */
  async pinnedIdentity(peer) {
    const pin = await keystore.getPin(this.#me, peer);
    return pin ? pin.identityKey : null;
  }

  /** This account's identity key (base64url), or null while locked. */
  get identityKey() {
    return this.#keyring ? b64e(this.#keyring.identityKey) : null;
  }
}
