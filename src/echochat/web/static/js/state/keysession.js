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
import { openBackup, overwriteBackup, publishDevice, saveMerged } from "./keybackup.js";
import { Directories, explainOpenError } from "./keytrust.js";

export { deviceLabel } from "./keybackup.js";
export { DIRECTORY_TTL_MS, explainOpenError, NEW_DEVICE_MS } from "./keytrust.js";

const { E2EEError } = e2ee;

/** @typedef {import("../crypto/e2ee.js").KeyDirectory} KeyDirectory */
/** @typedef {import("../crypto/e2ee.js").Keyring} Keyring */
/** @typedef {import("../crypto/e2ee.js").Envelope} Envelope */
/** @typedef {import("./keybackup.js").Api} Api */
/**
 * @typedef {"starting" | "unlocked" | "setup" | "restore" | "no_backup" | "stale" | "insecure" | "unavailable"} Phase
 */
/** @typedef {import("./keytrust.js").TrustInfo} TrustInfo */
/**
 * Keys backed up (under `secret`) but not yet published: a retry after a failed publish
 * goes on from here instead of writing another identity.
 * @typedef {{keyring: Keyring, deviceId: string, version: number, secret: string}} Pending
 */


/** @type {KeySession | null} */
let current = null;

/** The session the page created (for the PM windows' modules and for tests), or null. */
export function currentSession() {
  return current;
}

export class KeySession extends Emitter {
  /** @type {Keyring | null} */
  #keyring = null;
  /** @type {string | null} */
  #deviceId = null;
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
    this.directories = new Directories({
      me,
      api,
      report: (event) => this.emit("trust", event),
      ownIdentity: () => this.#keyring?.identityKey ?? null,
      ownMismatch: () => this.#lockStale(),
    });
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

  /** The key for "the user said Not now in this tab": no dialog at each page load then. */
  get #laterKey() {
    return `echochat.keys.later:${this.#me}`;
  }

  /** Remember (for this tab's session) that the user put the key dialog off. */
  putOff() {
    try {
      window.sessionStorage.setItem(this.#laterKey, "1");
    } catch {
      // storage unavailable: the dialog simply comes back at the next load
    }
  }

  /** The dialog a page load asks for by itself, unless the user put it off in this tab
   * (the padlock, the bar over the list and a locked window still offer it). */
  #autoPrompt() {
    let later = false;
    try {
      later = window.sessionStorage.getItem(this.#laterKey) === "1";
    } catch {
      later = false;
    }
    if (!later) {
      this.promptUnlock();
    }
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
      this.#autoPrompt();
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
      // Checked before unlocking, so that nothing is opened with keys the account dropped.
      this.#keyring = stored.keyring;
      this.#deviceId = stored.deviceId;
      if (await this.#checkOwnKeys()) {
        this.#setPhase("unlocked");
      }
      return;
    }
    await this.#findBackup();
    if (!this.unlocked) {
      this.#autoPrompt();
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
   * another browser they are not: lock, say so, and return false.) Publishes this device
   * again if the directory lost it. Offline, the keys are trusted until the next check.
   * @returns {Promise<boolean>}
   */
  async #checkOwnKeys() {
    const keyring = /** @type {Keyring} */ (this.#keyring);
    const deviceId = /** @type {string} */ (this.#deviceId);
    let data;
    try {
      data = await this.#api("GET", `/keys/users/${encodeURIComponent(this.#me)}`);
    } catch {
      return true; // offline: keep working with what is here; the next event checks again
    }
    if (!data.identity_key || !equalBytes(b64d(String(data.identity_key)), keyring.identityKey)) {
      this.#lockStale();
      return false;
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
    return true;
  }

  #lockStale() {
    this.#keyring = null;
    this.directories.invalidate();
    // The old keys stay in IndexedDB (the server's word alone never deletes them); the
    // restore below replaces them.
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
      this.#pending = { keyring, deviceId: device.deviceId, version, secret };
    } else if (this.#pending.secret !== secret) {
      // Backed up, not published yet, and now another secret: the backup follows it.
      const { keyring, version } = this.#pending;
      this.#pending.version = await saveMerged(this.#api, this.#me, keyring, secret, version);
      this.#pending.secret = secret;
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
      const keyring = await openBackup(this.#backup.blob, secret, this.#me);
      const own = await this.#api("GET", `/keys/users/${encodeURIComponent(this.#me)}`);
      if (own.identity_key && !equalBytes(b64d(String(own.identity_key)), keyring.identityKey)) {
        throw new E2EEError(
          "stale_backup",
          "This backup holds older keys than the ones your account uses now. Start fresh, " +
            "or ask an administrator.",
        );
      }
      const device = await keyring.addDevice();
      const version = await saveMerged(this.#api, this.#me, keyring, secret, this.#backup.version);
      this.#pending = { keyring, deviceId: device.deviceId, version, secret };
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
    const version = await overwriteBackup(this.#api, blob, this.#backupVersion);
    this.#pending = { keyring, deviceId: device.deviceId, version, secret };
    await this.#finish(true);
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
    pending.secret = "";
    this.#pending = null;
    this.#backup = null;
    this.#backupVersion = pending.version;
    this.#keyring = pending.keyring;
    this.#deviceId = pending.deviceId;
    this.directories.invalidate(this.#me);
    this.#setPhase("unlocked");
  }

  /**
   * @param {Keyring} keyring
   * @param {string} deviceId
   * @param {boolean} reset
   */
  async #publish(keyring, deviceId, reset) {
    await publishDevice(this.#api, this.#me, keyring, deviceId, reset);
  }

  /** A fresh recovery key to show once (the default secret of a backup). */
  newRecoveryKey() {
    return e2ee.newRecoveryKey();
  }

  // --- other users' keys (./keytrust.js) --------------------------------------------------------

  /**
   * Forget cached directories (one user's, or all): the next use fetches them again.
   * @param {string} [username]
   */
  invalidate(username) {
    this.directories.invalidate(username);
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
    this.directories.invalidate(username);
    if (!this.unlocked) {
      return;
    }
    if (username === this.#me) {
      if (data.reason === "identity_reset") {
        await this.#checkOwnKeys();
      }
      return;
    }
    try {
      await this.directories.refresh(username);
    } catch (error) {
      console.error(error);
    }
  }

  /**
   * Listen to a page socket (net/socket.js): `keys.changed` events, and after a reconnect
   * or a resync (events may have been missed) every cached directory is fetched again when
   * next used.
   * @param {{on: (type: string, listener: (data: any) => void) => () => void}} socket
   */
  attach(socket) {
    socket.on("event", ({ type, data }) => {
      if (type === "keys.changed") {
        this.keysChanged(data ?? {});
      }
    });
    socket.on("ready", () => this.invalidate());
    socket.on("resynced", () => this.invalidate());
  }

  // --- sealing and opening ---------------------------------------------------------------------

  #unlockedKeys() {
    if (!this.unlocked || this.#keyring === null || this.#deviceId === null) {
      throw new E2EEError("locked", explainOpenError("locked", this.#me));
    }
    return { keyring: this.#keyring, deviceId: this.#deviceId };
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
    const peerDir = await this.directories.forPeer(peer);
    let own = (await this.directories.get(this.#me)).directory;
    if (!own.devices.some((d) => d.deviceId === deviceId)) {
      own = (await this.directories.get(this.#me, true)).directory; // maybe just published
    }
    if (!own.devices.some((d) => d.deviceId === deviceId)) {
      await this.#publish(keyring, deviceId, false);
      own = (await this.directories.get(this.#me, true)).directory;
    }
    const listed = own.devices.find((d) => d.deviceId === deviceId);
    const sameKeys =
      listed &&
      equalBytes(listed.x25519, device.x25519Public) &&
      equalBytes(listed.ed25519, device.ed25519Public);
    if (listed && !sameKeys) {
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
      senderKeys = (await this.directories.get(this.#me, fresh)).directory;
      trustedIdentity = keyring.identityKey;
    } else {
      senderKeys = await this.directories.forPeer(sender, fresh);
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

  // --- encrypted groups (state/rooms.js; docs/e2ee.md, conversation `group:<id>`) ----------

  /**
   * The envelope of `payload` from this device to a group: wrapped for every published
   * device of every member (`members`, the user included; members without keys have none),
   * as the server requires (409 `stale_members` otherwise: refetch the members, seal again).
   * @param {number} room
   * @param {string[]} members usernames
   * @param {Record<string, unknown>} payload
   * @param {string} clientId
   * @returns {Promise<Envelope>}
   */
  async sealGroup(room, members, payload, clientId) {
    const { keyring, deviceId } = this.#unlockedKeys();
    const device = keyring.device(deviceId);
    let own = (await this.directories.get(this.#me)).directory;
    if (!own.devices.some((d) => d.deviceId === deviceId)) {
      own = (await this.directories.get(this.#me, true)).directory;
    }
    const others = members.filter((m) => m !== this.#me);
    // A member who has not set up encryption has no device to wrap for (the server counts
    // none either); they see the group's messages as unreadable until they do.
    const found = await Promise.all(
      others.map((m) =>
        this.directories.forPeer(m).catch((error) => {
          if (error instanceof E2EEError && error.code === "no_keys") {
            return null;
          }
          throw error;
        }),
      ),
    );
    const directories = found.filter((d) => d !== null);
    return e2ee.seal(e2ee.encodePayload(payload), {
      conv: `group:${room}`,
      sender: this.#me,
      senderDevice: device,
      clientId,
      recipients: e2ee.recipientsFor(this.#me, deviceId, own, ...directories),
    });
  }

  /**
   * Verify and decrypt a room message of an encrypted group (`{room, sender, envelope}`).
   * @param {{room: number, sender: string, envelope: unknown}} message
   * @returns {Promise<{payload: Record<string, unknown>}>}
   */
  async openGroup(message) {
    const sender = String(message.sender);
    try {
      return await this.#openGroup(message, false);
    } catch (error) {
      if (
        error instanceof E2EEError &&
        ["unknown_sender_device", "bad_device_signature"].includes(error.code)
      ) {
        try {
          return await this.#openGroup(message, true);
        } catch (again) {
          throw this.#explained(again, sender);
        }
      }
      throw this.#explained(error, sender);
    }
  }

  /**
   * @param {{room: number, sender: string, envelope: unknown}} message
   * @param {boolean} fresh
   */
  async #openGroup(message, fresh) {
    const { keyring, deviceId } = this.#unlockedKeys();
    const sender = String(message.sender);
    const senderKeys =
      sender === this.#me
        ? (await this.directories.get(this.#me, fresh)).directory
        : await this.directories.forPeer(sender, fresh);
    const envelope = /** @type {any} */ (message.envelope);
    const entries = Array.isArray(envelope?.keys) ? envelope.keys : [];
    const mine = entries
      .filter((/** @type {any} */ k) => k && k.user === this.#me && keyring.devices.has(k.device))
      .map((/** @type {any} */ k) => String(k.device));
    const chosen = mine.includes(deviceId) ? deviceId : (mine[0] ?? deviceId);
    const opened = await e2ee.openEnvelope(envelope, {
      expectedConv: `group:${Number(message.room)}`,
      meUser: this.#me,
      myDevice: keyring.device(chosen),
      senderKeys,
      trustedIdentity: sender === this.#me ? keyring.identityKey : senderKeys.identityKey,
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
    return this.directories.trust(peer);
  }

  /**
   * The safety number of the user and `peer` for the identity key the server shows now (a
   * changed one included, so that it can be compared before it is accepted).
   * @param {string} peer
   * @returns {Promise<import("../crypto/e2ee.js").SafetyNumber>}
   */
  async safetyNumber(peer) {
    const { keyring } = this.#unlockedKeys();
    const theirs = await this.directories.currentIdentity(peer);
    return e2ee.safetyNumber(this.#me, keyring.identityKey, peer, theirs);
  }

  /**
   * Mark `peer` verified (the safety numbers matched) or not. Verifying a changed key
   * accepts it.
   * @param {string} peer
   * @param {boolean} verified
   */
  async setVerified(peer, verified) {
    this.#unlockedKeys();
    if (await this.directories.setVerified(peer, verified)) {
      this.emit("trust", { peer, kind: "identity_accepted" });
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
    if (await this.directories.accept(peer, verified)) {
      this.emit("trust", { peer, kind: "identity_accepted" });
    }
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
