// @ts-check
/**
 * End-to-end encryption, suite v1, in the browser: the twin of the SDK's
 * `echochat.client.e2ee` (Python). docs/e2ee.md is the specification and
 * tests/vectors/e2ee_v1.json the test vectors both reproduce byte for byte.
 *
 * WebCrypto only: X25519 and Ed25519 keys, AES-GCM, SHA-256, PBKDF2, and HPKE composed from
 * X25519 + HMAC-SHA256 + AES-GCM in ./hpke.js. No third-party or hand-written primitive.
 *
 * Where private keys live. A key must be exportable once, at birth, to go into the key
 * backup (the only way it leaves the device, docs/e2ee.md 8.1): `generateKey` makes it
 * extractable, its raw 32 bytes are exported into the {@link Keyring}, and the CryptoKey
 * used from then on is a *non-extractable* re-import of those bytes. Keys restored from a
 * backup take the same path. The raw bytes stay in memory only as long as a backup may
 * still have to be written (`Keyring.forgetPrivateBytes()` drops them); what ./keystore.js
 * keeps in IndexedDB is the non-extractable CryptoKeys and the public keys, never the raw
 * private bytes. A page script that is compromised can still *use* the keys while the page
 * runs, but cannot read them out of the browser.
 *
 * Every refusal is an {@link E2EEError} with the stable codes of docs/e2ee.md.
 */

import {
  b64d,
  b64e,
  compareBytes,
  concat,
  EncodingError,
  equalBytes,
  hex,
  lp,
  randomBytes,
  utf8,
  utf8Decode,
} from "./encoding.js";
import { AEAD_AES_256_GCM, HpkeError, open as hpkeOpen, seal as hpkeSeal } from "./hpke.js";
import { generateKeyPair, importPublic, keyPairFromPrivate } from "./keys.js";

/** @typedef {import("./encoding.js").Bytes} Bytes */

const subtle = globalThis.crypto.subtle;

// --- constants (docs/e2ee.md, "Limits") -------------------------------------------------------

export const VERSION = 1;
export const SUITE = "echochat/v1";
export const MAX_DEVICES = 20;
export const MAX_RECIPIENTS = 40;
export const MAX_PLAINTEXT = 16 * 1024;
export const MAX_ENVELOPE_BYTES = 60 * 1024;
export const MAX_CLIENT_ID = 64;
export const MIN_ITERATIONS = 600_000;
export const MAX_ITERATIONS = 10_000_000;
export const BACKUP_KDF = "pbkdf2-sha256";
export const MIN_PASSPHRASE = 8;

export const KEY_SIZE = 32;
export const NONCE_SIZE = 12;
export const TAG_SIZE = 16;
export const SIGNATURE_SIZE = 64;
export const WRAP_SIZE = 32 + KEY_SIZE + TAG_SIZE;
export const SALT_SIZE = 16;

const V = String(VERSION);
const USERNAME_RE = /^[a-z0-9_.-]{3,32}$/;
const DEVICE_ID_RE = /^[A-Za-z0-9_-]{8,64}$/;
const CONV_RE = /^(?:dm:([a-z0-9_.-]{3,32}):([a-z0-9_.-]{3,32})|group:[A-Za-z0-9_-]{1,64})$/;
const ENVELOPE_FIELDS = [
  "v",
  "conv",
  "sender",
  "sender_device",
  "client_id",
  "nonce",
  "ct",
  "keys",
  "sig",
];
const BACKUP_FIELDS = ["v", "kdf", "iterations", "salt", "nonce", "ct"];
const EMPTY = new Uint8Array(0);

/** Crockford's base32 (no I, L, O, U): a recovery key is 52 symbols, 13 groups of 4. */
export const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RECOVERY_KEY_SYMBOLS = 52;
/**
 * The characters Python's `str.isspace()` (and so the SDK's `\s` and `strip()`) counts as
 * whitespace. JavaScript's `\s` differs (it lacks U+001C-U+001F and U+0085, and has
 * U+FEFF), so both sides read typed text the same only with this explicit class.
 */
const PY_SPACE =
  "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_SPACE_OR_DASH = new RegExp(`[${PY_SPACE}-]`, "g");
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "g");

/**
 * Something could not be sealed, opened or restored. `code` is stable and meant for
 * programs (docs/e2ee.md section 10: `malformed`, `unsupported_version`,
 * `wrong_conversation`, `wrong_sender`, `identity_changed`, `unknown_sender_device`,
 * `bad_device_signature`, `bad_signature`, `not_a_recipient`, `wrap_failed`,
 * `decrypt_failed`, `bad_payload`; sealing: `too_large`, `no_recipients`,
 * `too_many_recipients`, `bad_recipient`; backups and keyrings: `weak_kdf`,
 * `unsupported_kdf`, `weak_passphrase`, `identity_mismatch`, `device_conflict`,
 * `unknown_device`, and, browser only, `not_exportable`). `message` is for people and
 * never contains key material.
 */
export class E2EEError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "E2EEError";
    this.code = code;
  }

  toString() {
    return `${this.code}: ${this.message}`;
  }
}

// --- small helpers -----------------------------------------------------------------------------

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Whether an object has exactly these own keys.
 * @param {Record<string, unknown>} object
 * @param {string[]} fields
 */
function hasExactly(object, fields) {
  const keys = Object.keys(object);
  return keys.length === fields.length && fields.every((f) => Object.hasOwn(object, f));
}

/**
 * Decode canonical base64url without padding (optionally of an exact size), or refuse.
 * @param {unknown} value
 * @param {number | null} size
 * @param {string} what
 * @returns {Bytes}
 */
function raw(value, size, what) {
  if (typeof value !== "string") {
    throw new E2EEError("malformed", `${what} must be a base64url string`);
  }
  let bytes;
  try {
    bytes = b64d(value);
  } catch (error) {
    const why = error instanceof EncodingError ? error.message : "not base64url";
    throw new E2EEError("malformed", `${what} is ${why}`);
  }
  if (size !== null && bytes.length !== size) {
    throw new E2EEError("malformed", `${what} must be ${size} bytes, not ${bytes.length}`);
  }
  return bytes;
}

/**
 * A 32-byte key given as bytes or base64url.
 * @param {Bytes | string} value
 * @param {string} what
 */
function keyBytes(value, what) {
  const bytes = typeof value === "string" ? raw(value, KEY_SIZE, what) : value;
  if (!(bytes instanceof Uint8Array) || bytes.length !== KEY_SIZE) {
    throw new E2EEError("malformed", `${what} must be ${KEY_SIZE} bytes`);
  }
  return bytes;
}

/**
 * @param {unknown} name
 * @param {string} [what]
 * @returns {string}
 */
function checkUsername(name, what = "username") {
  if (typeof name !== "string" || !USERNAME_RE.test(name)) {
    throw new E2EEError("malformed", `${what} must be a canonical (lower-case) username`);
  }
  return name;
}

/**
 * A username as typed -> canonical (the server's rule: ASCII only, then lower-cased).
 * @param {string} name
 */
function canonicalUsername(name) {
  const text = name.replace(PY_STRIP, "");
  if (!/^[\x00-\x7f]*$/.test(text)) {
    throw new E2EEError("malformed", "usernames are ASCII");
  }
  return checkUsername(text.toLowerCase());
}

/**
 * @param {unknown} deviceId
 * @param {string} [what]
 * @returns {string}
 */
function checkDeviceId(deviceId, what = "device id") {
  if (typeof deviceId !== "string" || !DEVICE_ID_RE.test(deviceId)) {
    throw new E2EEError("malformed", `${what} must be 8-64 characters of A-Z a-z 0-9 _ -`);
  }
  return deviceId;
}

/**
 * 1-64 Unicode code points (well-formed: a lone surrogate has no UTF-8).
 * @param {unknown} clientId
 * @returns {string}
 */
function checkClientId(clientId) {
  if (typeof clientId !== "string" || !clientId.isWellFormed()) {
    throw new E2EEError("malformed", `client_id must be 1-${MAX_CLIENT_ID} characters`);
  }
  const length = [...clientId].length;
  if (length < 1 || length > MAX_CLIENT_ID) {
    throw new E2EEError("malformed", `client_id must be 1-${MAX_CLIENT_ID} characters`);
  }
  return clientId;
}

/**
 * @param {unknown} conv
 * @returns {string}
 */
function checkConv(conv) {
  if (typeof conv !== "string" || !CONV_RE.test(conv)) {
    throw new E2EEError("malformed", "conv must be 'dm:<a>:<b>' or 'group:<id>'");
  }
  const members = dmMembers(conv);
  if (members !== null && members[0] > members[1]) {
    throw new E2EEError("malformed", "the usernames of a dm conversation must be sorted");
  }
  return conv;
}

/**
 * The two members of a `dm:` conversation, or null.
 * @param {string} conv
 * @returns {[string, string] | null}
 */
export function dmMembers(conv) {
  const found = CONV_RE.exec(conv);
  if (found === null || found[1] === undefined) {
    return null;
  }
  return [found[1], found[2]];
}

/**
 * Byte order on ASCII strings (= code-point order = JavaScript's `<`; not localeCompare).
 * @param {string} a
 * @param {string} b
 */
function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The conversation id of the direct messages between two users: `dm:<a>:<b>`, sorted.
 * @param {string} userA
 * @param {string} userB
 */
export function dmConversation(userA, userB) {
  const [a, b] = [canonicalUsername(userA), canonicalUsername(userB)].sort(cmp);
  return `dm:${a}:${b}`;
}

/**
 * The plaintext of a message: its payload as compact UTF-8 JSON, non-ASCII unescaped
 * (the same bytes as the SDK's `json.dumps(ensure_ascii=False, separators=(",", ":"))`).
 * @param {Record<string, unknown>} payload
 * @returns {Bytes}
 */
export function encodePayload(payload) {
  try {
    return utf8(JSON.stringify(payload));
  } catch (error) {
    throw new E2EEError("malformed", `the payload cannot be encoded: ${error}`);
  }
}

/**
 * @param {CryptoKey} key Ed25519 private
 * @param {Bytes} data
 * @returns {Promise<Bytes>}
 */
async function sign(key, data) {
  return new Uint8Array(await subtle.sign({ name: "Ed25519" }, key, data));
}

/**
 * Whether `signature` is a valid Ed25519 signature of `data` under the raw `publicKey`.
 * @param {Bytes} publicKey
 * @param {Bytes} signature
 * @param {Bytes} data
 * @returns {Promise<boolean>}
 */
export async function verifySignature(publicKey, signature, data) {
  try {
    const key = await importPublic("Ed25519", publicKey);
    return await subtle.verify({ name: "Ed25519" }, key, signature, data);
  } catch {
    return false;
  }
}

// --- keys --------------------------------------------------------------------------------------

/**
 * The raw private values of one device (what the key backup holds).
 * @typedef {{x25519: Bytes, ed25519: Bytes}} DeviceSecrets
 */

/**
 * One device's keys: X25519 (receives wraps) and Ed25519 (signs envelopes). The private
 * halves are non-extractable CryptoKeys; the public halves raw bytes.
 */
export class DeviceKeys {
  /**
   * @param {string} deviceId
   * @param {import("./keys.js").KeyPair} x25519
   * @param {import("./keys.js").KeyPair} ed25519
   */
  constructor(deviceId, x25519, ed25519) {
    this.deviceId = checkDeviceId(deviceId);
    /** @type {CryptoKey} */
    this.x25519 = x25519.privateKey;
    /** @type {Bytes} */
    this.x25519Public = x25519.publicKey;
    /** @type {CryptoKey} */
    this.ed25519 = ed25519.privateKey;
    /** @type {Bytes} */
    this.ed25519Public = ed25519.publicKey;
  }

  /**
   * New random keys (a random 22-character id unless given), with their raw private
   * values for the keyring's backup.
   * @param {string} [deviceId]
   * @returns {Promise<{device: DeviceKeys, secrets: DeviceSecrets}>}
   */
  static async generate(deviceId) {
    const x = await generateKeyPair("X25519");
    const e = await generateKeyPair("Ed25519");
    const device = new DeviceKeys(deviceId ?? b64e(randomBytes(16)), x, e);
    return { device, secrets: { x25519: x.raw, ed25519: e.raw } };
  }

  /**
   * Keys from their raw 32-byte private values (as in the key backup).
   * @param {string} deviceId
   * @param {Bytes} x25519
   * @param {Bytes} ed25519
   * @returns {Promise<DeviceKeys>}
   */
  static async fromPrivateBytes(deviceId, x25519, ed25519) {
    checkDeviceId(deviceId);
    if (x25519.length !== KEY_SIZE || ed25519.length !== KEY_SIZE) {
      throw new E2EEError("malformed", `device ${JSON.stringify(deviceId)}: keys are 32 bytes`);
    }
    return new DeviceKeys(
      deviceId,
      await keyPairFromPrivate("X25519", x25519),
      await keyPairFromPrivate("Ed25519", ed25519),
    );
  }

  /**
   * Whether `other` is the same device with the same keys.
   * @param {DeviceKeys} other
   */
  sameKeys(other) {
    return (
      this.deviceId === other.deviceId &&
      equalBytes(this.x25519Public, other.x25519Public) &&
      equalBytes(this.ed25519Public, other.ed25519Public)
    );
  }

  /** @returns {StoredDevice} what ./keystore.js puts in IndexedDB */
  toStored() {
    return {
      deviceId: this.deviceId,
      x25519: this.x25519,
      x25519Public: this.x25519Public,
      ed25519: this.ed25519,
      ed25519Public: this.ed25519Public,
    };
  }

  /**
   * @param {StoredDevice} stored
   * @returns {DeviceKeys}
   */
  static fromStored(stored) {
    return new DeviceKeys(
      stored.deviceId,
      { privateKey: stored.x25519, publicKey: stored.x25519Public },
      { privateKey: stored.ed25519, publicKey: stored.ed25519Public },
    );
  }
}

/**
 * A device as IndexedDB keeps it (structured clone; CryptoKeys stay non-extractable).
 * @typedef {object} StoredDevice
 * @property {string} deviceId
 * @property {CryptoKey} x25519
 * @property {Bytes} x25519Public
 * @property {CryptoKey} ed25519
 * @property {Bytes} ed25519Public
 */

/**
 * The keyring as the backup stores it (docs/e2ee.md 8.1): raw private keys in base64url.
 * @typedef {object} KeyringJson
 * @property {number} v
 * @property {string} identity
 * @property {Record<string, {x25519: string, ed25519: string}>} devices
 */

/**
 * A keyring as IndexedDB keeps it.
 * @typedef {object} StoredKeyring
 * @property {number} v
 * @property {CryptoKey} identity
 * @property {Bytes} identityPublic
 * @property {StoredDevice[]} devices
 */

/**
 * A user's keys: the identity key (Ed25519, vouches for devices, makes safety numbers) and
 * the keys of every device the user has had, so that a browser restoring the backup reads
 * the whole history. Devices are added, never replaced.
 *
 * A keyring that was generated or restored from a backup also holds the raw private values
 * (needed to write the backup); one loaded from IndexedDB does not, and refuses to export
 * (`not_exportable`): restore the backup to write a new one.
 */
export class Keyring {
  /** @type {Bytes | null} */
  #identityRaw;
  /** @type {Map<string, DeviceKeys>} */
  #devices = new Map();
  /** @type {Map<string, DeviceSecrets>} */
  #secrets = new Map();

  /**
   * Use {@link Keyring.generate}, {@link Keyring.fromPrivateBytes},
   * {@link Keyring.fromJson} or {@link Keyring.fromStored}.
   * @param {import("./keys.js").KeyPair} identity
   * @param {Bytes | null} identityRaw
   */
  constructor(identity, identityRaw) {
    /** @type {CryptoKey} the identity key's private half (non-extractable) */
    this.identity = identity.privateKey;
    /** @type {Bytes} the public identity key, what safety numbers are made of */
    this.identityKey = identity.publicKey;
    this.#identityRaw = identityRaw;
  }

  /** A new identity key and no device yet. */
  static async generate() {
    const pair = await generateKeyPair("Ed25519");
    return new Keyring(pair, pair.raw);
  }

  /**
   * From raw private keys: `devices` maps an id to `[x25519, ed25519]`.
   * @param {Bytes} identity
   * @param {Record<string, [Bytes, Bytes]>} [devices]
   */
  static async fromPrivateBytes(identity, devices = {}) {
    if (identity.length !== KEY_SIZE) {
      throw new E2EEError("malformed", "the identity key is 32 bytes");
    }
    const keyring = new Keyring(await keyPairFromPrivate("Ed25519", identity), identity.slice());
    for (const [deviceId, [x, e]] of Object.entries(devices)) {
      keyring.add(await DeviceKeys.fromPrivateBytes(deviceId, x, e), { x25519: x, ed25519: e });
    }
    return keyring;
  }

  /**
   * The inverse of {@link Keyring#toJson}; also takes the UTF-8 JSON text or its bytes.
   * @param {unknown} data
   */
  static async fromJson(data) {
    let value = data;
    if (typeof value === "string" || value instanceof Uint8Array) {
      try {
        value = JSON.parse(typeof value === "string" ? value : utf8Decode(value));
      } catch {
        throw new E2EEError("malformed", "the keyring is not JSON");
      }
    }
    if (!isObject(value) || !hasExactly(value, ["v", "identity", "devices"])) {
      throw new E2EEError("malformed", "a keyring has exactly v, identity and devices");
    }
    if (value.v !== VERSION) {
      throw new E2EEError("unsupported_version", "unsupported keyring version");
    }
    const devices = value.devices;
    if (!isObject(devices)) {
      throw new E2EEError("malformed", "keyring devices must be an object");
    }
    /** @type {Record<string, [Bytes, Bytes]>} a device may be called "__proto__" */
    const parsed = Object.create(null);
    for (const [deviceId, keys] of Object.entries(devices)) {
      checkDeviceId(deviceId);
      if (!isObject(keys) || !hasExactly(keys, ["x25519", "ed25519"])) {
        throw new E2EEError(
          "malformed",
          `device ${JSON.stringify(deviceId)} needs x25519 and ed25519`,
        );
      }
      parsed[deviceId] = [
        raw(keys.x25519, KEY_SIZE, "x25519 private key"),
        raw(keys.ed25519, KEY_SIZE, "ed25519 private key"),
      ];
    }
    return Keyring.fromPrivateBytes(raw(value.identity, KEY_SIZE, "identity"), parsed);
  }

  /** @returns {StoredKeyring} the CryptoKeys and public keys, for IndexedDB */
  toStored() {
    return {
      v: VERSION,
      identity: this.identity,
      identityPublic: this.identityKey,
      devices: [...this.#devices.values()].map((d) => d.toStored()),
    };
  }

  /**
   * A keyring from IndexedDB: usable, not exportable.
   * @param {StoredKeyring} stored
   */
  static fromStored(stored) {
    if (stored.v !== VERSION) {
      throw new E2EEError("unsupported_version", "unsupported stored keyring version");
    }
    const keyring = new Keyring(
      { privateKey: stored.identity, publicKey: stored.identityPublic },
      null,
    );
    for (const device of stored.devices) {
      keyring.add(DeviceKeys.fromStored(device));
    }
    return keyring;
  }

  /** Whether the raw private values are here, so that a backup can be written. */
  get exportable() {
    return (
      this.#identityRaw !== null && [...this.#devices.keys()].every((id) => this.#secrets.has(id))
    );
  }

  /** Drop the raw private values (after the backup is saved); the keys stay usable. */
  forgetPrivateBytes() {
    this.#identityRaw?.fill(0);
    this.#identityRaw = null;
    for (const secrets of this.#secrets.values()) {
      secrets.x25519.fill(0);
      secrets.ed25519.fill(0);
    }
    this.#secrets.clear();
  }

  /** @returns {Map<string, DeviceKeys>} a copy of the device map, in the order added */
  get devices() {
    return new Map(this.#devices);
  }

  /**
   * @param {string} deviceId
   * @returns {DeviceKeys}
   */
  device(deviceId) {
    const device = this.#devices.get(deviceId);
    if (device === undefined) {
      throw new E2EEError(
        "unknown_device",
        `no device ${JSON.stringify(deviceId)} in this keyring`,
      );
    }
    return device;
  }

  /**
   * Generate keys for a new device of this user and keep them.
   * @param {string} [deviceId]
   * @returns {Promise<DeviceKeys>}
   */
  async addDevice(deviceId) {
    const { device, secrets } = await DeviceKeys.generate(deviceId);
    this.add(device, secrets);
    return device;
  }

  /**
   * Keep an existing device's keys (the same id and keys again: no-op).
   * @param {DeviceKeys} device
   * @param {DeviceSecrets} [secrets] its raw private values, if known
   */
  add(device, secrets) {
    const known = this.#devices.get(device.deviceId);
    if (known !== undefined && !known.sameKeys(device)) {
      throw new E2EEError(
        "device_conflict",
        `device ${JSON.stringify(device.deviceId)} already has other keys`,
      );
    }
    if (known === undefined) {
      this.#devices.set(device.deviceId, device);
    }
    if (secrets !== undefined && !this.#secrets.has(device.deviceId)) {
      this.#secrets.set(device.deviceId, {
        x25519: secrets.x25519.slice(),
        ed25519: secrets.ed25519.slice(),
      });
    }
  }

  /**
   * Add the devices of `other` (say, a backup written meanwhile by another browser); the
   * ids added. Both must hold the same identity key.
   * @param {Keyring} other
   * @returns {string[]}
   */
  merge(other) {
    if (!equalBytes(other.identityKey, this.identityKey)) {
      throw new E2EEError("identity_mismatch", "the keyrings hold different identity keys");
    }
    const added = [...other.#devices.keys()].filter((id) => !this.#devices.has(id));
    for (const device of other.#devices.values()) {
      this.add(device, other.#secrets.get(device.deviceId));
    }
    if (this.#identityRaw === null && other.#identityRaw !== null) {
      this.#identityRaw = other.#identityRaw.slice();
    }
    return added;
  }

  /**
   * The public half of a device with the identity key's signature on its statement.
   * @param {string} username
   * @param {string} deviceId
   * @returns {Promise<PublicDevice>}
   */
  async certify(username, deviceId) {
    const device = this.device(deviceId);
    const statement = deviceStatement(
      checkUsername(username),
      deviceId,
      device.x25519Public,
      device.ed25519Public,
    );
    return {
      deviceId,
      x25519: device.x25519Public,
      ed25519: device.ed25519Public,
      signature: await sign(this.identity, statement),
      label: "",
    };
  }

  /**
   * The body of `PUT /api/v1/keys/devices/{device_id}` for one of these devices (add
   * `label` and `reset_identity` as needed).
   * @param {string} username
   * @param {string} deviceId
   * @returns {Promise<{identity_key: string, x25519: string, ed25519: string, signature: string}>}
   */
  async publishedDevice(username, deviceId) {
    const device = await this.certify(username, deviceId);
    return {
      identity_key: b64e(this.identityKey),
      x25519: b64e(device.x25519),
      ed25519: b64e(device.ed25519),
      signature: b64e(device.signature),
    };
  }

  /**
   * This user's own directory as it should be published (every device certified).
   * @param {string} username
   * @returns {Promise<KeyDirectory>}
   */
  async directory(username) {
    const devices = [];
    for (const deviceId of this.#devices.keys()) {
      devices.push(await this.certify(username, deviceId));
    }
    return { username, identityKey: this.identityKey, devices, rejected: [] };
  }

  /**
   * What `JSON.stringify(keyring)` writes: public values only. (The private export is the
   * explicit {@link Keyring#toJson}, deliberately not `toJSON`, so that logging or sending
   * an object that holds a keyring can never leak its keys.)
   * @returns {{identityKey: string, devices: string[]}}
   */
  toJSON() {
    return { identityKey: b64e(this.identityKey), devices: [...this.#devices.keys()] };
  }

  /**
   * The keyring as the backup stores it (private keys: handle with care). Devices sorted
   * by id. Refused (`not_exportable`) for a keyring loaded from IndexedDB.
   * @returns {KeyringJson}
   */
  toJson() {
    const identity = this.#identityRaw;
    if (identity === null || !this.exportable) {
      throw new E2EEError(
        "not_exportable",
        "this keyring holds non-extractable keys only; restore the key backup to write a new one",
      );
    }
    /** @type {Record<string, {x25519: string, ed25519: string}>} a device may be "__proto__" */
    const devices = Object.create(null);
    for (const deviceId of [...this.#devices.keys()].sort(cmp)) {
      const secrets = /** @type {DeviceSecrets} */ (this.#secrets.get(deviceId));
      devices[deviceId] = { x25519: b64e(secrets.x25519), ed25519: b64e(secrets.ed25519) };
    }
    return { v: VERSION, identity: b64e(identity), devices };
  }

  /**
   * {@link Keyring#toJson} as compact UTF-8 JSON: the backup's plaintext. Written field by
   * field, because a JavaScript object would put integer-like device ids first.
   * @returns {Bytes}
   */
  export() {
    const data = this.toJson();
    const devices = Object.keys(data.devices)
      .sort(cmp)
      .map((id) => `${JSON.stringify(id)}:${JSON.stringify(data.devices[id])}`);
    const identity = JSON.stringify(data.identity);
    return utf8(`{"v":${data.v},"identity":${identity},"devices":{${devices.join(",")}}}`);
  }
}

// --- the public key directory ------------------------------------------------------------------

/**
 * A device as the key directory publishes it (raw bytes; the JSON fields are base64url).
 * @typedef {object} PublicDevice
 * @property {string} deviceId
 * @property {Bytes} x25519
 * @property {Bytes} ed25519
 * @property {Bytes} signature
 * @property {string} label
 */

/**
 * A user's identity key and devices. From {@link verifyDirectory}, `devices` holds only the
 * devices the identity key certified and `rejected` the others (`malformed`,
 * `bad_device_signature`, `duplicate_device`).
 * @typedef {object} KeyDirectory
 * @property {string} username
 * @property {Bytes} identityKey
 * @property {PublicDevice[]} devices
 * @property {{deviceId: string, code: string}[]} rejected
 */

/**
 * One device a content key is wrapped for.
 * @typedef {{user: string, device: string, x25519: Bytes}} Recipient
 */

/**
 * statement = lp("echochat/v1/device", username, device_id, x25519_public, ed25519_public)
 * @param {string} username
 * @param {string} deviceId
 * @param {Bytes} x25519
 * @param {Bytes} ed25519
 */
export function deviceStatement(username, deviceId, x25519, ed25519) {
  return lp("echochat/v1/device", username, deviceId, x25519, ed25519);
}

/**
 * A device from the server's JSON (`device_id`, `x25519`, `ed25519`, `signature`; `label`
 * optional, other fields ignored); refuses malformed values.
 * @param {unknown} data
 * @returns {PublicDevice}
 */
export function publicDeviceFromJson(data) {
  if (!isObject(data)) {
    throw new E2EEError("malformed", "a device must be an object");
  }
  return {
    deviceId: checkDeviceId(data.device_id),
    x25519: raw(data.x25519, KEY_SIZE, "x25519"),
    ed25519: raw(data.ed25519, KEY_SIZE, "ed25519"),
    signature: raw(data.signature, SIGNATURE_SIZE, "signature"),
    label: typeof data.label === "string" ? data.label : "",
  };
}

/**
 * @param {PublicDevice} device
 * @returns {{device_id: string, x25519: string, ed25519: string, signature: string, label: string}}
 */
export function publicDeviceToJson(device) {
  return {
    device_id: device.deviceId,
    x25519: b64e(device.x25519),
    ed25519: b64e(device.ed25519),
    signature: b64e(device.signature),
    label: device.label,
  };
}

/**
 * Whether `identityKey` signed this device for `username`.
 * @param {PublicDevice} device
 * @param {string} username
 * @param {Bytes} identityKey
 * @returns {Promise<boolean>}
 */
export function certifiedBy(device, username, identityKey) {
  const statement = deviceStatement(username, device.deviceId, device.x25519, device.ed25519);
  return verifySignature(identityKey, device.signature, statement);
}

/**
 * A directory exactly as given, **unchecked** (what opening receives when the caller did
 * not filter; opening checks the sender device's certificate itself). Malformed devices
 * are refused. Prefer {@link verifyDirectory}.
 * @param {unknown} data `{"username", "identity_key", "devices": [...]}`
 * @returns {KeyDirectory}
 */
export function parseDirectory(data) {
  if (!isObject(data) || !Array.isArray(data.devices)) {
    throw new E2EEError("malformed", "a key directory has username, identity_key and devices");
  }
  return {
    username: checkUsername(data.username),
    identityKey: raw(data.identity_key, KEY_SIZE, "identity key"),
    devices: data.devices.map(publicDeviceFromJson),
    rejected: [],
  };
}

/**
 * Check every device's certificate. Devices that are malformed, not certified or listed
 * twice are left out and reported in `rejected`: a server cannot add a device to someone's
 * directory.
 * @param {string} username
 * @param {Bytes | string} identityKey
 * @param {Iterable<unknown>} devices PublicDevice objects or the server's JSON
 * @returns {Promise<KeyDirectory>}
 */
export async function verifyDirectory(username, identityKey, devices) {
  const user = checkUsername(username);
  const identity = keyBytes(identityKey, "identity key");
  /** @type {PublicDevice[]} */
  let good = [];
  /** @type {{deviceId: string, code: string}[]} */
  const rejected = [];
  const seen = new Set();
  for (const item of devices) {
    /** @type {PublicDevice} */
    let device;
    if (isObject(item) && item.x25519 instanceof Uint8Array) {
      device = /** @type {PublicDevice} */ (/** @type {unknown} */ (item));
    } else {
      try {
        device = publicDeviceFromJson(item);
      } catch (error) {
        if (!(error instanceof E2EEError)) {
          throw error;
        }
        rejected.push({
          deviceId: String(isObject(item) ? item.device_id : undefined),
          code: "malformed",
        });
        continue;
      }
    }
    if (seen.has(device.deviceId)) {
      rejected.push({ deviceId: device.deviceId, code: "duplicate_device" });
      good = good.filter((d) => d.deviceId !== device.deviceId);
      continue;
    }
    seen.add(device.deviceId);
    if (await certifiedBy(device, user, identity)) {
      good.push(device);
    } else {
      rejected.push({ deviceId: device.deviceId, code: "bad_device_signature" });
    }
  }
  return { username: user, identityKey: identity, devices: good, rejected };
}

/**
 * The server's answer to `GET /api/v1/keys/users/{username}`, verified; `no_keys` if the
 * user has not set up encryption, `identity_changed` if `trustedIdentity` (the pinned key)
 * differs: show it, never accept it silently.
 * @param {unknown} data
 * @param {string} username the user asked for
 * @param {Bytes | null} [trustedIdentity]
 * @returns {Promise<KeyDirectory>}
 */
export async function directoryFromServer(data, username, trustedIdentity = null) {
  if (!isObject(data) || !Array.isArray(data.devices)) {
    throw new E2EEError("malformed", "the server's key directory is not understood");
  }
  if (data.username !== username) {
    throw new E2EEError("malformed", `asked for ${username}, got ${String(data.username)}`);
  }
  if (data.identity_key === null || data.identity_key === undefined) {
    throw new E2EEError("no_keys", `${username} has not set up encryption yet`);
  }
  if (typeof data.identity_key !== "string") {
    throw new E2EEError("malformed", "identity_key must be a string");
  }
  const directory = await verifyDirectory(username, data.identity_key, data.devices);
  if (trustedIdentity !== null && !equalBytes(trustedIdentity, directory.identityKey)) {
    throw new E2EEError(
      "identity_changed",
      `${username}'s identity key changed; compare safety numbers before trusting it`,
    );
  }
  return directory;
}

/**
 * Every device of every directory, the sending device included: for a DM, pass the peer's
 * directory and the sender's own. The sending device gets a wrap of its own message, so
 * that the user's keys (restored from the backup in a new browser) read what they sent even
 * when that device and its local copy are gone (docs/e2ee.md 4.1).
 *
 * If the sender's directory is among `directories`, it must list `senderDevice`
 * (`unknown_sender_device` otherwise: receivers would refuse the envelope).
 * @param {string} sender
 * @param {string} senderDevice
 * @param {...KeyDirectory} directories
 * @returns {Recipient[]}
 */
export function recipientsFor(sender, senderDevice, ...directories) {
  /** @type {Recipient[]} */
  const out = [];
  for (const directory of directories) {
    if (
      directory.username === sender &&
      !directory.devices.some((d) => d.deviceId === senderDevice)
    ) {
      throw new E2EEError(
        "unknown_sender_device",
        `${JSON.stringify(senderDevice)} is not in ${sender}'s directory: publish it (or fetch ` +
          "the directory again) before sending from it",
      );
    }
    for (const device of directory.devices) {
      out.push({ user: directory.username, device: device.deviceId, x25519: device.x25519 });
    }
  }
  return out;
}

// --- the byte strings that are bound and signed ------------------------------------------------

/**
 * body_aad = lp("echochat/v1/body", "1", conv, sender, sender_device, client_id)
 * @param {string} conv
 * @param {string} sender
 * @param {string} senderDevice
 * @param {string} clientId
 */
export function bodyAad(conv, sender, senderDevice, clientId) {
  return lp("echochat/v1/body", V, conv, sender, senderDevice, clientId);
}

/**
 * info = lp("echochat/v1/wrap", "1", conv, sender, sender_device, user, device, client_id):
 * HPKE's `info` of the wrap for one recipient device (HPKE's own AAD is empty).
 * @param {string} conv
 * @param {string} sender
 * @param {string} senderDevice
 * @param {string} recipientUser
 * @param {string} recipientDevice
 * @param {string} clientId
 */
export function wrapInfo(conv, sender, senderDevice, recipientUser, recipientDevice, clientId) {
  return lp(
    "echochat/v1/wrap",
    V,
    conv,
    sender,
    senderDevice,
    recipientUser,
    recipientDevice,
    clientId,
  );
}

/**
 * What the sending device signs; `keys` are [user, device, wrap] in the envelope's
 * (sorted) order.
 * @param {string} conv
 * @param {string} sender
 * @param {string} senderDevice
 * @param {string} clientId
 * @param {Bytes} nonce
 * @param {Bytes} ct
 * @param {[string, string, Bytes][]} keys
 */
export function signatureInput(conv, sender, senderDevice, clientId, nonce, ct, keys) {
  /** @type {(string | Bytes)[]} */
  const fields = ["echochat/v1/sig", V, conv, sender, senderDevice, clientId, nonce, ct];
  for (const [user, device, wrap] of keys) {
    fields.push(user, device, wrap);
  }
  return lp(...fields);
}

// --- sealing -----------------------------------------------------------------------------------

/**
 * An envelope (docs/e2ee.md section 4), as JSON.
 * @typedef {object} Envelope
 * @property {number} v
 * @property {string} conv
 * @property {string} sender
 * @property {string} sender_device
 * @property {string} client_id
 * @property {string} nonce
 * @property {string} ct
 * @property {{user: string, device: string, wrap: string}[]} keys
 * @property {string} sig
 */

/**
 * What to seal and for whom.
 * @typedef {object} SealOptions
 * @property {string} conv
 * @property {string} sender
 * @property {DeviceKeys} senderDevice the sending device (its Ed25519 key signs)
 * @property {string} clientId unique per sender and conversation
 * @property {Recipient[]} recipients every device of the peer and every device of the
 *   sender, the sending one included ({@link recipientsFor})
 */

/**
 * Encrypt `plaintext` once under a fresh content key, wrap that key for each recipient
 * device with HPKE, and sign the envelope with the sending device's key.
 * @param {Bytes} plaintext
 * @param {SealOptions} options
 * @returns {Promise<Envelope>}
 */
export function seal(plaintext, options) {
  return sealWith(plaintext, {
    ...options,
    contentKey: randomBytes(KEY_SIZE),
    nonce: randomBytes(NONCE_SIZE),
  });
}

/**
 * Seal the DM text `{"type":"text","text":text}` from `sender` to `peer.username` for every
 * device of the peer and every device of the sender, this one included (`own`: the
 * sender's verified directory; it must list the sending device with its keys).
 * @param {string} text
 * @param {object} options
 * @param {string} options.sender
 * @param {DeviceKeys} options.senderDevice
 * @param {KeyDirectory} options.peer the peer's verified directory
 * @param {KeyDirectory} options.own the sender's verified directory
 * @param {string} options.clientId
 * @returns {Promise<Envelope>}
 */
export async function sealDm(text, { sender, senderDevice, peer, own, clientId }) {
  if (own.username !== sender) {
    throw new E2EEError("bad_recipient", "own must be the sender's directory");
  }
  const recipients = recipientsFor(sender, senderDevice.deviceId, peer, own);
  const listed = own.devices.find((d) => d.deviceId === senderDevice.deviceId);
  if (
    listed !== undefined &&
    !(
      equalBytes(listed.x25519, senderDevice.x25519Public) &&
      equalBytes(listed.ed25519, senderDevice.ed25519Public)
    )
  ) {
    throw new E2EEError(
      "device_conflict",
      `${sender}'s directory lists ${JSON.stringify(senderDevice.deviceId)} with other keys ` +
        "than the ones sending",
    );
  }
  return seal(encodePayload({ type: "text", text }), {
    conv: dmConversation(sender, peer.username),
    sender,
    senderDevice,
    clientId,
    recipients,
  });
}

/**
 * {@link seal} with the content key and nonce given (test vectors only: never reuse a
 * key). `wraps` may supply ready-made wraps by `user + "/" + device`.
 * @param {Bytes} plaintext
 * @param {SealOptions & {contentKey: Bytes, nonce: Bytes, wraps?: Map<string, Bytes>}} options
 * @returns {Promise<Envelope>}
 */
export async function sealWith(plaintext, options) {
  const { conv, sender, senderDevice, clientId, recipients, contentKey, nonce, wraps } = options;
  checkConv(conv);
  checkUsername(sender, "sender");
  checkClientId(clientId);
  const senderDeviceId = senderDevice.deviceId;
  const members = dmMembers(conv);
  if (members !== null && !members.includes(sender)) {
    throw new E2EEError("wrong_sender", `${sender} is not a member of ${conv}`);
  }
  if (plaintext.length > MAX_PLAINTEXT) {
    throw new E2EEError("too_large", `the plaintext is larger than ${MAX_PLAINTEXT} bytes`);
  }
  if (contentKey.length !== KEY_SIZE || nonce.length !== NONCE_SIZE) {
    throw new E2EEError("malformed", "the content key is 32 bytes and the nonce 12");
  }
  if (recipients.length === 0) {
    throw new E2EEError("no_recipients", "there is no device to encrypt for");
  }
  if (recipients.length > MAX_RECIPIENTS) {
    throw new E2EEError("too_many_recipients", `at most ${MAX_RECIPIENTS} devices per message`);
  }
  for (const r of recipients) {
    checkUsername(r.user, "recipient");
    checkDeviceId(r.device, "recipient device");
  }
  const ordered = [...recipients].sort((a, b) => cmp(a.user, b.user) || cmp(a.device, b.device));
  ordered.forEach((r, index) => {
    if (members !== null && !members.includes(r.user)) {
      throw new E2EEError("bad_recipient", `${r.user} is not a member of ${conv}`);
    }
    const previous = ordered[index - 1];
    if (previous !== undefined && previous.user === r.user && previous.device === r.device) {
      throw new E2EEError("bad_recipient", `device ${r.user}/${r.device} is listed twice`);
    }
    if (!(r.x25519 instanceof Uint8Array) || r.x25519.length !== KEY_SIZE) {
      throw new E2EEError("bad_recipient", `the key of ${r.user}/${r.device} is not 32 bytes`);
    }
  });

  const ct = await aesGcmEncrypt(
    contentKey,
    nonce,
    plaintext,
    bodyAad(conv, sender, senderDeviceId, clientId),
  );
  /** @type {[string, string, Bytes][]} */
  const keys = [];
  for (const r of ordered) {
    let wrap = wraps?.get(`${r.user}/${r.device}`);
    if (wrap === undefined) {
      const info = wrapInfo(conv, sender, senderDeviceId, r.user, r.device, clientId);
      try {
        const sealed = await hpkeSeal(AEAD_AES_256_GCM, r.x25519, info, EMPTY, contentKey);
        wrap = concat(sealed.enc, sealed.ciphertext);
      } catch (error) {
        if (!(error instanceof HpkeError)) {
          throw error;
        }
        throw new E2EEError("bad_recipient", `unusable key for ${r.user}/${r.device}`);
      }
    }
    keys.push([r.user, r.device, wrap]);
  }
  const sig = await sign(
    senderDevice.ed25519,
    signatureInput(conv, sender, senderDeviceId, clientId, nonce, ct, keys),
  );
  /** @type {Envelope} */
  const envelope = {
    v: VERSION,
    conv,
    sender,
    sender_device: senderDeviceId,
    client_id: clientId,
    nonce: b64e(nonce),
    ct: b64e(ct),
    keys: keys.map(([user, device, wrap]) => ({ user, device, wrap: b64e(wrap) })),
    sig: b64e(sig),
  };
  if (envelopeSize(envelope) > MAX_ENVELOPE_BYTES) {
    throw new E2EEError("too_large", `the envelope is larger than ${MAX_ENVELOPE_BYTES} bytes`);
  }
  return envelope;
}

/**
 * @param {Bytes} key
 * @param {Bytes} nonce
 * @param {Bytes} plaintext
 * @param {Bytes} aad
 * @returns {Promise<Bytes>}
 */
async function aesGcmEncrypt(key, nonce, plaintext, aad) {
  const k = await subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
  return new Uint8Array(
    await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, k, plaintext),
  );
}

/**
 * AES-GCM decryption, null when the tag does not verify.
 * @param {Bytes | CryptoKey} key
 * @param {Bytes} nonce
 * @param {Bytes} ct
 * @param {Bytes} aad
 * @returns {Promise<Bytes | null>}
 */
async function aesGcmDecrypt(key, nonce, ct, aad) {
  const k =
    key instanceof Uint8Array
      ? await subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"])
      : key;
  try {
    return new Uint8Array(
      await subtle.decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, k, ct),
    );
  } catch {
    return null;
  }
}

// --- opening -----------------------------------------------------------------------------------

/**
 * An envelope after steps 1-3 of opening.
 * @typedef {object} ParsedEnvelope
 * @property {string} conv
 * @property {string} sender
 * @property {string} senderDevice
 * @property {string} clientId
 * @property {Bytes} nonce
 * @property {Bytes} ct
 * @property {[string, string, Bytes][]} keys
 * @property {Bytes} sig
 */

/**
 * A verified, decrypted message.
 * @typedef {object} Opened
 * @property {string} conv
 * @property {string} sender
 * @property {string} senderDevice
 * @property {string} clientId
 * @property {Record<string, unknown>} payload
 * @property {Bytes} plaintext
 */

/**
 * The size the envelope limit is measured in: bytes of the compact JSON with every
 * non-ASCII character (and DEL) escaped as `\uXXXX`, as the SDK and the server measure it
 * (Python's `json.dumps(envelope, separators=(",", ":"))`). Never less than the UTF-8 of
 * `JSON.stringify`. Throws if the value is not JSON.
 * @param {unknown} envelope
 * @returns {number}
 */
export function envelopeSize(envelope) {
  const text = JSON.stringify(envelope);
  if (typeof text !== "string") {
    throw new TypeError("not JSON");
  }
  let size = 0;
  for (let i = 0; i < text.length; i += 1) {
    size += text.charCodeAt(i) < 0x7f ? 1 : 6; // one \uXXXX per UTF-16 code unit
  }
  return size;
}

/**
 * Steps 1-3 of opening: an object, version 1, exactly the v1 fields, at most 60 KiB, each
 * field well-formed (the shape check the server runs too).
 * @param {unknown} envelope
 * @returns {ParsedEnvelope}
 */
export function parseEnvelope(envelope) {
  if (!isObject(envelope)) {
    throw new E2EEError("malformed", "an envelope is a JSON object");
  }
  if (!Object.hasOwn(envelope, "v") || envelope.v !== VERSION) {
    throw new E2EEError(
      "unsupported_version",
      `unsupported envelope version ${JSON.stringify(envelope.v) ?? "(none)"}; ` +
        "this client reads version 1",
    );
  }
  if (!hasExactly(envelope, ENVELOPE_FIELDS)) {
    const missing = ENVELOPE_FIELDS.filter((f) => !Object.hasOwn(envelope, f));
    const extra = Object.keys(envelope).filter((f) => !ENVELOPE_FIELDS.includes(f));
    throw new E2EEError("malformed", `envelope fields: missing [${missing}], unknown [${extra}]`);
  }
  let size;
  try {
    size = envelopeSize(envelope);
  } catch {
    throw new E2EEError("malformed", "the envelope is not JSON");
  }
  if (size > MAX_ENVELOPE_BYTES) {
    throw new E2EEError("malformed", `the envelope is larger than ${MAX_ENVELOPE_BYTES} bytes`);
  }
  const conv = checkConv(envelope.conv);
  const sender = checkUsername(envelope.sender, "sender");
  const senderDevice = checkDeviceId(envelope.sender_device, "sender_device");
  const clientId = checkClientId(envelope.client_id);
  const nonce = raw(envelope.nonce, NONCE_SIZE, "nonce");
  const ct = raw(envelope.ct, null, "ct");
  if (ct.length < TAG_SIZE || ct.length > MAX_PLAINTEXT + TAG_SIZE) {
    throw new E2EEError("malformed", "ct has an impossible length");
  }
  const entries = envelope.keys;
  if (!Array.isArray(entries) || entries.length < 1 || entries.length > MAX_RECIPIENTS) {
    throw new E2EEError("malformed", `keys must be a list of 1-${MAX_RECIPIENTS} wraps`);
  }
  /** @type {[string, string, Bytes][]} */
  const keys = [];
  for (const entry of entries) {
    if (!isObject(entry) || !hasExactly(entry, ["user", "device", "wrap"])) {
      throw new E2EEError("malformed", "each key entry has exactly user, device and wrap");
    }
    const user = checkUsername(entry.user, "key user");
    const device = checkDeviceId(entry.device, "key device");
    const last = keys[keys.length - 1];
    if (last !== undefined && (cmp(last[0], user) || cmp(last[1], device)) >= 0) {
      throw new E2EEError("malformed", "key entries must be sorted by (user, device), unique");
    }
    keys.push([user, device, raw(entry.wrap, WRAP_SIZE, "wrap")]);
  }
  const sig = raw(envelope.sig, SIGNATURE_SIZE, "sig");
  return { conv, sender, senderDevice, clientId, nonce, ct, keys, sig };
}

/**
 * Verify and decrypt an envelope received in `expectedConv` by `meUser`'s device
 * `myDevice`. `senderKeys` is the directory of the envelope's sender (fetched for
 * `envelope.sender`, ideally verified and checked against a pinned identity);
 * `trustedIdentity`, if given, must equal its identity key. The sender device's certificate
 * is checked here again, whatever the directory's origin.
 *
 * Checks, in the order of docs/e2ee.md 4.2; the first failure throws an {@link E2EEError}
 * with its code.
 * @param {unknown} envelope
 * @param {object} options
 * @param {string} options.expectedConv the conversation it was delivered in
 * @param {string} options.meUser
 * @param {DeviceKeys} options.myDevice
 * @param {KeyDirectory} options.senderKeys the directory of `envelope.sender`
 * @param {Bytes | null} [options.trustedIdentity] the identity key pinned for the sender
 * @returns {Promise<Opened>}
 */
export async function openEnvelope(
  envelope,
  { expectedConv, meUser, myDevice, senderKeys, trustedIdentity = null },
) {
  const parsed = parseEnvelope(envelope); // steps 1-3
  if (parsed.conv !== expectedConv) {
    throw new E2EEError(
      "wrong_conversation",
      `this envelope belongs to ${JSON.stringify(parsed.conv)}, ` +
        `not ${JSON.stringify(expectedConv)} (replayed?)`,
    );
  }
  const members = dmMembers(parsed.conv);
  if (members !== null && !members.includes(parsed.sender)) {
    throw new E2EEError("wrong_sender", `${parsed.sender} is not a member of ${parsed.conv}`);
  }
  if (parsed.sender !== senderKeys.username) {
    throw new E2EEError(
      "wrong_sender",
      `sent by ${JSON.stringify(parsed.sender)}, ` +
        `but the keys given are for ${JSON.stringify(senderKeys.username)}`,
    );
  }
  if (trustedIdentity !== null && !equalBytes(trustedIdentity, senderKeys.identityKey)) {
    throw new E2EEError(
      "identity_changed",
      `${parsed.sender}'s identity key is not the one you trust; compare safety numbers`,
    );
  }
  const device = senderKeys.devices.find((d) => d.deviceId === parsed.senderDevice);
  if (device === undefined) {
    throw new E2EEError(
      "unknown_sender_device",
      `${parsed.sender} has no published device ${JSON.stringify(parsed.senderDevice)}`,
    );
  }
  if (!(await certifiedBy(device, parsed.sender, senderKeys.identityKey))) {
    throw new E2EEError(
      "bad_device_signature",
      `device ${JSON.stringify(parsed.senderDevice)} ` +
        `is not certified by ${parsed.sender}'s identity key`,
    );
  }
  const signed = signatureInput(
    parsed.conv,
    parsed.sender,
    parsed.senderDevice,
    parsed.clientId,
    parsed.nonce,
    parsed.ct,
    parsed.keys,
  );
  if (!(await verifySignature(device.ed25519, parsed.sig, signed))) {
    throw new E2EEError("bad_signature", "the envelope's signature does not verify");
  }
  const mine = myDevice.deviceId;
  const entry = parsed.keys.find(([user, dev]) => user === meUser && dev === mine);
  if (entry === undefined) {
    throw new E2EEError("not_a_recipient", `this message was not encrypted for ${meUser}/${mine}`);
  }
  const wrap = entry[2];
  const info = wrapInfo(
    parsed.conv,
    parsed.sender,
    parsed.senderDevice,
    meUser,
    mine,
    parsed.clientId,
  );
  let contentKey;
  try {
    contentKey = await hpkeOpen(
      AEAD_AES_256_GCM,
      wrap.subarray(0, 32),
      myDevice.x25519,
      myDevice.x25519Public,
      info,
      EMPTY,
      wrap.subarray(32),
    );
  } catch (error) {
    if (!(error instanceof HpkeError)) {
      throw error;
    }
    throw new E2EEError("wrap_failed", "the content key could not be unwrapped");
  }
  if (contentKey.length !== KEY_SIZE) {
    throw new E2EEError("wrap_failed", "the unwrapped content key is not 32 bytes");
  }
  const aad = bodyAad(parsed.conv, parsed.sender, parsed.senderDevice, parsed.clientId);
  const plaintext = await aesGcmDecrypt(contentKey, parsed.nonce, parsed.ct, aad);
  contentKey.fill(0);
  if (plaintext === null) {
    throw new E2EEError("decrypt_failed", "the message body does not decrypt");
  }
  let payload;
  try {
    payload = JSON.parse(utf8Decode(plaintext));
  } catch {
    throw new E2EEError("bad_payload", "the decrypted payload is not UTF-8 JSON");
  }
  if (!isObject(payload)) {
    throw new E2EEError("bad_payload", "the decrypted payload is not a JSON object");
  }
  return {
    conv: parsed.conv,
    sender: parsed.sender,
    senderDevice: parsed.senderDevice,
    clientId: parsed.clientId,
    payload,
    plaintext,
  };
}

// --- safety numbers ----------------------------------------------------------------------------

/** The fingerprint of two users' identity keys, the same on both sides. */
export class SafetyNumber {
  /** @param {Bytes} digest */
  constructor(digest) {
    this.digest = digest;
  }

  /** 60 decimal digits: the digest as a big-endian integer modulo 10**60. */
  get digits() {
    return (BigInt(`0x${hex(this.digest)}`) % 10n ** 60n).toString().padStart(60, "0");
  }

  /** 12 groups of 5 digits, as shown. @returns {string[]} */
  get groups() {
    const digits = this.digits;
    return Array.from({ length: 12 }, (_, i) => digits.slice(5 * i, 5 * i + 5));
  }

  /** What the QR code encodes: `echochat-safety:1:<hex digest>`. */
  get qrPayload() {
    return `echochat-safety:${VERSION}:${hex(this.digest)}`;
  }

  /**
   * Whether a scanned QR payload is this number.
   * @param {string} payload
   */
  matchesQr(payload) {
    return payload.replace(PY_STRIP, "").toLowerCase() === this.qrPayload;
  }

  /** @param {SafetyNumber} other */
  equals(other) {
    return equalBytes(this.digest, other.digest);
  }

  toString() {
    return this.groups.join(" ");
  }
}

/**
 * SHA-256 of lp("echochat/v1/safety", first user, first key, second user, second key), the
 * pair ordered by username, so both users compute the same number.
 * @param {string} userA
 * @param {Bytes | string} identityA raw or base64url
 * @param {string} userB
 * @param {Bytes | string} identityB
 * @returns {Promise<SafetyNumber>}
 */
export async function safetyNumber(userA, identityA, userB, identityB) {
  /** @type {[string, Bytes][]} */
  const pair = [
    [checkUsername(userA), keyBytes(identityA, "identity key")],
    [checkUsername(userB), keyBytes(identityB, "identity key")],
  ];
  pair.sort((a, b) => cmp(a[0], b[0]) || compareBytes(a[1], b[1]));
  const [[first, firstKey], [second, secondKey]] = pair;
  const input = lp("echochat/v1/safety", first, firstKey, second, secondKey);
  return new SafetyNumber(new Uint8Array(await subtle.digest("SHA-256", input)));
}

// --- recovery keys and the key backup ----------------------------------------------------------

/**
 * 32 bytes as 52 Crockford base32 symbols (big-endian bits, 4 zero bits of padding at the
 * end) in 13 groups of 4 joined by '-'.
 * @param {Bytes} rawKey
 * @returns {string}
 */
export function formatRecoveryKey(rawKey) {
  if (rawKey.length !== KEY_SIZE) {
    throw new E2EEError("malformed", "a recovery key is 32 bytes");
  }
  const number = BigInt(`0x${hex(rawKey)}`) << 4n;
  let symbols = "";
  for (let i = RECOVERY_KEY_SYMBOLS - 1; i >= 0; i -= 1) {
    symbols += CROCKFORD[Number((number >> BigInt(5 * i)) & 31n)];
  }
  return /** @type {string[]} */ (symbols.match(/.{4}/g)).join("-");
}

/**
 * The 32 bytes of a recovery key as typed (whitespace and '-' dropped, upper-cased, O read
 * as 0, I and L as 1), or null if `text` is not one.
 * @param {string} text
 * @returns {Bytes | null}
 */
export function parseRecoveryKey(text) {
  const symbols = text
    .replace(PY_SPACE_OR_DASH, "")
    .toUpperCase()
    .replace(/O/g, "0")
    .replace(/[IL]/g, "1");
  if (
    [...symbols].length !== RECOVERY_KEY_SYMBOLS ||
    [...symbols].some((c) => !CROCKFORD.includes(c))
  ) {
    return null;
  }
  let number = 0n;
  for (const c of symbols) {
    number = (number << 5n) | BigInt(CROCKFORD.indexOf(c));
  }
  if (number & 0xfn) {
    return null; // the padding bits must be zero
  }
  const digits = (number >> 4n).toString(16).padStart(2 * KEY_SIZE, "0");
  return Uint8Array.from(/** @type {string[]} */ (digits.match(/../g)), (h) => parseInt(h, 16));
}

/** A fresh random recovery key, formatted to be shown once and written down. */
export function newRecoveryKey() {
  return formatRecoveryKey(randomBytes(KEY_SIZE));
}

/**
 * The PBKDF2 password for a backup secret: a recovery key's 32 bytes if `secret` parses as
 * one, else the passphrase in Unicode NFC as UTF-8. Bytes are taken as they are.
 * @param {string | Bytes} secret
 * @returns {Bytes}
 */
export function backupSecret(secret) {
  if (secret instanceof Uint8Array) {
    return secret;
  }
  const recovery = parseRecoveryKey(secret);
  if (recovery !== null) {
    return recovery;
  }
  try {
    return utf8(secret.normalize("NFC"));
  } catch {
    throw new E2EEError("malformed", "the passphrase is not valid Unicode text");
  }
}

/**
 * The associated data of a backup: binds it to its owner.
 * @param {string} username
 */
export function backupAad(username) {
  return lp("echochat/v1/backup", username);
}

/**
 * PBKDF2-HMAC-SHA256(secret, salt, iterations, 32 bytes): the backup's AES-256-GCM key.
 * @param {Bytes} secret
 * @param {Bytes} salt
 * @param {number} iterations
 * @returns {Promise<Bytes>}
 */
export async function deriveBackupKey(secret, salt, iterations) {
  const base = await subtle.importKey("raw", secret, "PBKDF2", false, ["deriveBits"]);
  const params = { name: "PBKDF2", hash: "SHA-256", salt, iterations };
  return new Uint8Array(await subtle.deriveBits(params, base, 8 * KEY_SIZE));
}

/**
 * The backup blob with everything given (test vectors; no minimum enforced here).
 * @param {Bytes} plaintext
 * @param {Bytes} secret
 * @param {string} username
 * @param {number} iterations
 * @param {Bytes} salt
 * @param {Bytes} nonce
 * @returns {Promise<string>}
 */
export async function sealBackupWith(plaintext, secret, username, iterations, salt, nonce) {
  const key = await deriveBackupKey(secret, salt, iterations);
  const ct = await aesGcmEncrypt(key, nonce, plaintext, backupAad(username));
  key.fill(0);
  return JSON.stringify({
    v: VERSION,
    kdf: BACKUP_KDF,
    iterations,
    salt: b64e(salt),
    nonce: b64e(nonce),
    ct: b64e(ct),
  });
}

/**
 * The key backup blob (JSON text) of `keyring`, encrypted for `username` under a
 * passphrase or recovery key ({@link backupSecret}). PBKDF2 takes about a second.
 * @param {Keyring} keyring must be exportable (generated or restored, not from IndexedDB)
 * @param {string | Bytes} secret
 * @param {string} username
 * @param {{iterations?: number}} [options]
 * @returns {Promise<string>}
 */
export async function encryptBackup(
  keyring,
  secret,
  username,
  { iterations = MIN_ITERATIONS } = {},
) {
  checkUsername(username);
  if (!Number.isInteger(iterations) || iterations < MIN_ITERATIONS || iterations > MAX_ITERATIONS) {
    throw new E2EEError("weak_kdf", `iterations must be ${MIN_ITERATIONS} to ${MAX_ITERATIONS}`);
  }
  const isPassphrase = typeof secret === "string" && parseRecoveryKey(secret) === null;
  if (isPassphrase && [...secret.normalize("NFC")].length < MIN_PASSPHRASE) {
    throw new E2EEError(
      "weak_passphrase",
      `the passphrase needs at least ${MIN_PASSPHRASE} characters`,
    );
  }
  const plaintext = keyring.export();
  try {
    return await sealBackupWith(
      plaintext,
      backupSecret(secret),
      username,
      iterations,
      randomBytes(SALT_SIZE),
      randomBytes(NONCE_SIZE),
    );
  } finally {
    plaintext.fill(0);
  }
}

/**
 * Parse and check a blob before any key derivation (docs/e2ee.md 8.2, "Opening").
 * @param {string | Bytes} blob
 * @returns {{iterations: number, salt: Bytes, nonce: Bytes, ct: Bytes}}
 */
export function parseBackup(blob) {
  /** @type {unknown} */
  let data;
  try {
    data = JSON.parse(typeof blob === "string" ? blob : utf8Decode(blob));
  } catch {
    throw new E2EEError("malformed", "the key backup is not JSON");
  }
  if (!isObject(data)) {
    throw new E2EEError("malformed", "the key backup is a JSON object");
  }
  if (data.v !== VERSION) {
    throw new E2EEError(
      "unsupported_version",
      `unsupported key backup version ${JSON.stringify(data.v)}`,
    );
  }
  if (!hasExactly(data, BACKUP_FIELDS)) {
    throw new E2EEError("malformed", `a key backup has exactly ${[...BACKUP_FIELDS].sort()}`);
  }
  if (data.kdf !== BACKUP_KDF) {
    throw new E2EEError(
      "unsupported_kdf",
      `unsupported key derivation ${JSON.stringify(data.kdf)}`,
    );
  }
  const iterations = data.iterations;
  if (typeof iterations !== "number" || !Number.isInteger(iterations)) {
    throw new E2EEError("malformed", "iterations must be an integer");
  }
  if (iterations < MIN_ITERATIONS) {
    throw new E2EEError(
      "weak_kdf",
      `the backup asks for ${iterations} PBKDF2 iterations; at least ${MIN_ITERATIONS} are ` +
        "required (refused: a downgrade would make guessing the passphrase cheap)",
    );
  }
  if (iterations > MAX_ITERATIONS) {
    throw new E2EEError("unsupported_kdf", `more than ${MAX_ITERATIONS} iterations`);
  }
  const salt = raw(data.salt, SALT_SIZE, "salt");
  const nonce = raw(data.nonce, NONCE_SIZE, "nonce");
  const ct = raw(data.ct, null, "ct");
  if (ct.length < TAG_SIZE) {
    throw new E2EEError("malformed", "ct is too short");
  }
  return { iterations, salt, nonce, ct };
}

/**
 * The keyring inside a backup blob (exportable: it can be merged and saved again).
 * `decrypt_failed` means a wrong passphrase or recovery key (or another user's blob, or a
 * corrupted one); `weak_kdf` a blob asking for fewer than 600,000 iterations, refused
 * before trying.
 * @param {string | Bytes} blob
 * @param {string | Bytes} secret
 * @param {string} username
 * @returns {Promise<Keyring>}
 */
export async function decryptBackup(blob, secret, username) {
  checkUsername(username);
  const { iterations, salt, nonce, ct } = parseBackup(blob);
  const key = await deriveBackupKey(backupSecret(secret), salt, iterations);
  const plaintext = await aesGcmDecrypt(key, nonce, ct, backupAad(username));
  key.fill(0);
  if (plaintext === null) {
    throw new E2EEError(
      "decrypt_failed",
      "wrong passphrase or recovery key (the backup does not decrypt)",
    );
  }
  try {
    return await Keyring.fromJson(plaintext);
  } finally {
    plaintext.fill(0);
  }
}
