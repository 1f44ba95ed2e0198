// @ts-check
/**
 * X25519 and Ed25519 keys in WebCrypto: import from and export to the raw 32-byte values
 * the key backup stores (docs/e2ee.md section 8.1).
 *
 * WebCrypto imports a raw *private* key of these curves only as PKCS #8, so a raw value is
 * wrapped in the fixed 16-byte PKCS #8 prefix of RFC 8410 (an encoding, nothing computed).
 * The public key of a private value comes from WebCrypto itself: the value is imported once
 * as extractable and its JWK export carries `x`; the key used afterwards is a second,
 * non-extractable import.
 */

import { b64d, concat, unhex } from "./encoding.js";

/** @typedef {import("./encoding.js").Bytes} Bytes */

const subtle = globalThis.crypto.subtle;

/**
 * RFC 8410's PKCS #8 encoding of a raw private key is this fixed DER prefix and the 32 bytes:
 * PrivateKeyInfo { version 0, AlgorithmIdentifier { id-X25519 | id-Ed25519 }, OCTET STRING }.
 */
const PKCS8_PREFIX = {
  X25519: unhex("302e020100300506032b656e04220420"),
  Ed25519: unhex("302e020100300506032b657004220420"),
};

/** @typedef {"X25519" | "Ed25519"} Curve */

/**
 * A private key of one of the two curves with its public half.
 * @typedef {object} KeyPair
 * @property {CryptoKey} privateKey non-extractable unless asked otherwise
 * @property {Bytes} publicKey the raw 32-byte public key
 */

/** @param {Curve} curve @returns {KeyUsage[]} */
function privateUsages(curve) {
  return curve === "X25519" ? ["deriveBits"] : ["sign"];
}

/**
 * Import a raw 32-byte private key.
 * @param {Curve} curve
 * @param {Bytes} raw
 * @param {boolean} [extractable] false unless the raw value must be exported again
 * @returns {Promise<CryptoKey>}
 */
export function importPrivate(curve, raw, extractable = false) {
  if (raw.length !== 32) {
    throw new RangeError(`a ${curve} private key is 32 bytes`);
  }
  const der = concat(PKCS8_PREFIX[curve], raw);
  return subtle.importKey("pkcs8", der, { name: curve }, extractable, privateUsages(curve));
}

/**
 * Import a raw 32-byte public key.
 * @param {Curve} curve
 * @param {Bytes} raw
 * @returns {Promise<CryptoKey>}
 */
export function importPublic(curve, raw) {
  return subtle.importKey("raw", raw, { name: curve }, true, curve === "X25519" ? [] : ["verify"]);
}

/**
 * The raw 32-byte public key of a CryptoKey pair's public half.
 * @param {CryptoKey} publicKey
 * @returns {Promise<Bytes>}
 */
export async function exportPublic(publicKey) {
  return new Uint8Array(await subtle.exportKey("raw", publicKey));
}

/**
 * The raw 32 bytes of an extractable private key (the inverse of {@link importPrivate}).
 * @param {Curve} curve
 * @param {CryptoKey} privateKey
 * @returns {Promise<Bytes>}
 */
export async function exportPrivate(curve, privateKey) {
  const der = new Uint8Array(await subtle.exportKey("pkcs8", privateKey));
  const prefix = PKCS8_PREFIX[curve];
  if (der.length !== prefix.length + 32 || !prefix.every((b, i) => der[i] === b)) {
    throw new Error(`unexpected PKCS #8 encoding of a ${curve} key`);
  }
  return der.slice(prefix.length);
}

/**
 * A key pair from a raw private key: the public key via an extractable import's JWK `x`,
 * the private key as a fresh non-extractable import (unless `extractable`).
 * @param {Curve} curve
 * @param {Bytes} raw
 * @param {boolean} [extractable]
 * @returns {Promise<KeyPair>}
 */
export async function keyPairFromPrivate(curve, raw, extractable = false) {
  const once = await importPrivate(curve, raw, true);
  const jwk = await subtle.exportKey("jwk", once);
  if (typeof jwk.x !== "string") {
    throw new Error(`WebCrypto gave no public key for a ${curve} private key`);
  }
  const publicKey = b64d(jwk.x);
  return { privateKey: extractable ? once : await importPrivate(curve, raw, false), publicKey };
}

/**
 * A fresh random key pair from `crypto.subtle.generateKey`, with its raw private value.
 * The key is generated extractable because the raw value must go into the key backup once;
 * the returned `privateKey` is a non-extractable re-import of it.
 * @param {Curve} curve
 * @returns {Promise<KeyPair & {raw: Bytes}>}
 */
export async function generateKeyPair(curve) {
  /** @type {KeyUsage[]} */
  const usages = curve === "X25519" ? ["deriveBits"] : ["sign", "verify"];
  const pair = /** @type {CryptoKeyPair} */ (
    await subtle.generateKey({ name: curve }, true, usages)
  );
  const raw = await exportPrivate(curve, pair.privateKey);
  return {
    privateKey: await importPrivate(curve, raw, false),
    publicKey: await exportPublic(pair.publicKey),
    raw,
  };
}
