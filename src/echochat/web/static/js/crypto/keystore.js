// @ts-check
/**
 * IndexedDB storage of this browser's E2EE keys and of the buddies' pinned identity keys.
 *
 * - `keyrings` (key: username): the user's keyring as non-extractable CryptoKeys plus the
 *   public keys (`Keyring.toStored()`), and which device of it is this browser. IndexedDB
 *   stores CryptoKeys by structured clone and keeps them non-extractable, so the private
 *   keys can be used here but never read out; they leave the device only inside the key
 *   backup (./e2ee.js).
 * - `pins` (key: [owner, buddy]): the identity key `owner` pinned for `buddy` on first use,
 *   and whether the user verified it (compared safety numbers). A different key later is
 *   `identity_changed`: shown, never accepted silently.
 */

import { b64d, b64e, equalBytes } from "./encoding.js";
import { Keyring } from "./e2ee.js";

/** @typedef {import("./encoding.js").Bytes} Bytes */

const DB_NAME = "echochat-e2ee";
const DB_VERSION = 1;
const KEYRINGS = "keyrings";
const PINS = "pins";

/**
 * @typedef {object} StoredKeys
 * @property {string} username
 * @property {string} deviceId this browser's device
 * @property {import("./e2ee.js").StoredKeyring} keyring
 */

/**
 * A pinned identity key.
 * @typedef {object} Pin
 * @property {string} owner the local user
 * @property {string} buddy
 * @property {string} identityKey base64url
 * @property {boolean} verified the user compared safety numbers
 * @property {number} pinnedAt ms since the epoch
 * @property {Record<string, number>} [devices] the buddy's device ids seen under this key,
 *   each with when it was first seen (0: already there when the key was pinned)
 */

/**
 * What {@link checkPin} found.
 * @typedef {{status: "new" | "same" | "changed", pin: Pin}} PinCheck
 */

/** @type {Promise<IDBDatabase> | null} */
let opening = null;

/**
 * The database, opened (and created) once per page.
 * @returns {Promise<IDBDatabase>}
 */
function db() {
  opening ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      const database = request.result;
      if (!database.objectStoreNames.contains(KEYRINGS)) {
        database.createObjectStore(KEYRINGS, { keyPath: "username" });
      }
      if (!database.objectStoreNames.contains(PINS)) {
        database.createObjectStore(PINS, { keyPath: ["owner", "buddy"] });
      }
    };
    request.onsuccess = () => {
      const database = request.result;
      database.onversionchange = () => {
        database.close();
        opening = null;
      };
      resolve(database);
    };
    request.onerror = () => {
      opening = null;
      reject(request.error);
    };
  });
  return opening;
}

/**
 * Run one request in a transaction and resolve when the transaction completes.
 * @template T
 * @param {string} store
 * @param {IDBTransactionMode} mode
 * @param {(store: IDBObjectStore) => IDBRequest<T>} action
 * @returns {Promise<T>}
 */
async function run(store, mode, action) {
  const database = await db();
  return new Promise((resolve, reject) => {
    const transaction = database.transaction(store, mode);
    const request = action(transaction.objectStore(store));
    transaction.oncomplete = () => resolve(request.result);
    transaction.onerror = () => reject(transaction.error ?? request.error);
    transaction.onabort = () => reject(transaction.error ?? new Error("transaction aborted"));
  });
}

/**
 * Keep the user's keyring (its non-extractable CryptoKeys) and this browser's device id.
 * @param {string} username
 * @param {Keyring} keyring
 * @param {string} deviceId
 * @returns {Promise<void>}
 */
export async function saveKeys(username, keyring, deviceId) {
  keyring.device(deviceId); // must be one of its devices
  /** @type {StoredKeys} */
  const record = { username, deviceId, keyring: keyring.toStored() };
  await run(KEYRINGS, "readwrite", (s) => s.put(record));
}

/**
 * The user's keyring as stored here (usable, not exportable), or null when this browser
 * has no keys for them (locked: restore the backup).
 * @param {string} username
 * @returns {Promise<{keyring: Keyring, deviceId: string} | null>}
 */
export async function loadKeys(username) {
  /** @type {StoredKeys | undefined} */
  const record = await run(KEYRINGS, "readonly", (s) => s.get(username));
  if (record === undefined) {
    return null;
  }
  return { keyring: Keyring.fromStored(record.keyring), deviceId: record.deviceId };
}

/**
 * Forget the user's keys in this browser (signing out for good, or starting fresh).
 * @param {string} username
 * @returns {Promise<void>}
 */
export async function deleteKeys(username) {
  await run(KEYRINGS, "readwrite", (s) => s.delete(username));
}

/**
 * The identity key `owner` pinned for `buddy`, or null.
 * @param {string} owner
 * @param {string} buddy
 * @returns {Promise<Pin | null>}
 */
export async function getPin(owner, buddy) {
  /** @type {Pin | undefined} */
  const pin = await run(PINS, "readonly", (s) => s.get([owner, buddy]));
  return pin ?? null;
}

/**
 * The pinned identity key as bytes, for `openEnvelope({trustedIdentity})`, or null.
 * @param {string} owner
 * @param {string} buddy
 * @returns {Promise<Bytes | null>}
 */
export async function trustedIdentity(owner, buddy) {
  const pin = await getPin(owner, buddy);
  return pin === null ? null : b64d(pin.identityKey);
}

/**
 * Pin `identityKey` for `buddy` (replacing any earlier pin: only after the user accepted a
 * change). `verified` records a safety-number comparison.
 * @param {string} owner
 * @param {string} buddy
 * @param {Bytes} identityKey
 * @param {{verified?: boolean}} [options]
 * @returns {Promise<Pin>}
 */
export async function pinIdentity(owner, buddy, identityKey, { verified = false } = {}) {
  /** @type {Pin} */
  const pin = { owner, buddy, identityKey: b64e(identityKey), verified, pinnedAt: Date.now() };
  await run(PINS, "readwrite", (s) => s.put(pin));
  return pin;
}

/**
 * Trust on first use: pin `identityKey` if nothing is pinned for `buddy` (`new`), report
 * `same` if it is the pinned key, and `changed` (leaving the old pin in place) if not.
 * @param {string} owner
 * @param {string} buddy
 * @param {Bytes} identityKey
 * @returns {Promise<PinCheck>}
 */
export async function checkPin(owner, buddy, identityKey) {
  const pin = await getPin(owner, buddy);
  if (pin === null) {
    return { status: "new", pin: await pinIdentity(owner, buddy, identityKey) };
  }
  const same = equalBytes(b64d(pin.identityKey), identityKey);
  return { status: same ? "same" : "changed", pin };
}

/**
 * Mark the pinned key of `buddy` as verified (or not).
 * @param {string} owner
 * @param {string} buddy
 * @param {boolean} verified
 * @returns {Promise<Pin | null>} the updated pin, or null if none
 */
export async function setVerified(owner, buddy, verified) {
  const pin = await getPin(owner, buddy);
  if (pin === null) {
    return null;
  }
  const updated = { ...pin, verified };
  await run(PINS, "readwrite", (s) => s.put(updated));
  return updated;
}

/**
 * Record the device ids seen for `buddy` under the pinned key (first-seen times in ms; 0
 * for devices that were there when the key was pinned), so that a device added later is
 * shown, never taken in silently.
 * @param {string} owner
 * @param {string} buddy
 * @param {Record<string, number>} devices
 * @returns {Promise<Pin | null>} the updated pin, or null if none
 */
export async function setSeenDevices(owner, buddy, devices) {
  const pin = await getPin(owner, buddy);
  if (pin === null) {
    return null;
  }
  const updated = { ...pin, devices: { ...devices } };
  await run(PINS, "readwrite", (s) => s.put(updated));
  return updated;
}

/**
 * Every pin of `owner`.
 * @param {string} owner
 * @returns {Promise<Pin[]>}
 */
export async function listPins(owner) {
  const range = IDBKeyRange.bound([owner, ""], [owner, "\uffff"]);
  return run(PINS, "readonly", (s) => s.getAll(range));
}
