// @ts-check
/**
 * Byte encodings of E2EE suite v1 (docs/e2ee.md section 2), the browser twin of
 * src/echochat/domain/e2ee.py: `lp()` (length-prefixed fields), strict base64url without
 * padding, UTF-8, hex, and a few byte helpers. No cryptography here.
 */

/**
 * Bytes backed by an ordinary ArrayBuffer (what WebCrypto accepts as a BufferSource).
 * @typedef {Uint8Array<ArrayBuffer>} Bytes
 */

const encoder = new TextEncoder();
/** Strict: invalid UTF-8 throws; a leading BOM is kept (as Python's `bytes.decode()`). */
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Thrown by the strict decoders ({@link b64d}, {@link unhex}, {@link utf8Decode}). */
export class EncodingError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "EncodingError";
  }
}

/**
 * The UTF-8 bytes of a string. Refuses lone surrogates (TextEncoder would silently turn
 * them into U+FFFD, so two different strings would encode the same).
 * @param {string} text
 * @returns {Bytes}
 */
export function utf8(text) {
  if (!text.isWellFormed()) {
    throw new EncodingError("the text has a lone surrogate");
  }
  return encoder.encode(text);
}

/**
 * Strict UTF-8 decoding.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function utf8Decode(bytes) {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new EncodingError("not UTF-8");
  }
}

/**
 * lp(f1, f2, ...): for each field its length as a 4-byte big-endian unsigned integer, then
 * its bytes; strings are UTF-8.
 * @param {...(string | Bytes)} fields
 * @returns {Bytes}
 */
export function lp(...fields) {
  const parts = fields.map((field) => (typeof field === "string" ? utf8(field) : field));
  const out = new Uint8Array(parts.reduce((sum, part) => sum + 4 + part.length, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const part of parts) {
    view.setUint32(at, part.length, false);
    out.set(part, at + 4);
    at += 4 + part.length;
  }
  return out;
}

/**
 * Concatenate byte strings.
 * @param {...Bytes} parts
 * @returns {Bytes}
 */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Whether two byte strings are equal (not constant-time: for public values only).
 * @param {Bytes} a
 * @param {Bytes} b
 * @returns {boolean}
 */
export function equalBytes(a, b) {
  if (a.length !== b.length) {
    return false;
  }
  for (let i = 0; i < a.length; i += 1) {
    if (a[i] !== b[i]) {
      return false;
    }
  }
  return true;
}

/**
 * Compare byte strings in byte order (negative, zero or positive).
 * @param {Bytes} a
 * @param {Bytes} b
 * @returns {number}
 */
export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i += 1) {
    if (a[i] !== b[i]) {
      return a[i] - b[i];
    }
  }
  return a.length - b.length;
}

/**
 * I2OSP(value, length): the big-endian encoding of a non-negative integer in `length`
 * bytes (RFC 8017), as HPKE uses it.
 * @param {number} value
 * @param {number} length
 * @returns {Bytes}
 */
export function i2osp(value, length) {
  if (!Number.isSafeInteger(value) || value < 0 || value >= 256 ** length) {
    throw new RangeError(`${value} does not fit in ${length} bytes`);
  }
  const out = new Uint8Array(length);
  let rest = value;
  for (let i = length - 1; i >= 0; i -= 1) {
    out[i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  return out;
}

/**
 * base64url (RFC 4648 section 5) without padding.
 * @param {Bytes} bytes
 * @returns {string}
 */
export function b64e(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const B64U = /^[A-Za-z0-9_-]*$/;

/**
 * Strict base64url without padding, in its canonical spelling only: no padding, no `+` or
 * `/`, no whitespace, and the unused low bits of the last symbol zero (re-encoding gives the
 * same text). Anything else throws {@link EncodingError}.
 * @param {string} text
 * @returns {Bytes}
 */
export function b64d(text) {
  if (typeof text !== "string" || !B64U.test(text) || text.length % 4 === 1) {
    throw new EncodingError("not base64url without padding");
  }
  const standard = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(standard + "=".repeat((4 - (standard.length % 4)) % 4));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) {
    out[i] = binary.charCodeAt(i);
  }
  if (b64e(out) !== text) {
    throw new EncodingError("not canonical base64url");
  }
  return out;
}

/**
 * Lower-case hex.
 * @param {Bytes} bytes
 * @returns {string}
 */
export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Strict hex (either case, even length).
 * @param {string} text
 * @returns {Bytes}
 */
export function unhex(text) {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(text)) {
    throw new EncodingError("not hex");
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i += 1) {
    out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

/**
 * Cryptographically random bytes.
 * @param {number} length
 * @returns {Bytes}
 */
export function randomBytes(length) {
  return crypto.getRandomValues(new Uint8Array(length));
}
