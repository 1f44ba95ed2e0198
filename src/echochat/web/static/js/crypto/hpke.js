// @ts-check
/**
 * HPKE (RFC 9180) in base mode, composed from WebCrypto primitives only, for the one KEM and
 * KDF suite v1 uses: DHKEM(X25519, HKDF-SHA256) (kem 0x0020) with HKDF-SHA256 (kdf 0x0001),
 * and AES-256-GCM (aead 0x0002; AES-128-GCM, 0x0001, too, so that RFC 9180 A.1.1 can be
 * checked step by step).
 *
 * WebCrypto has no HPKE. What is composed here is only what RFC 9180 writes down in terms
 * of primitives: X25519 is `deriveBits({name: "X25519"})`, HKDF-Extract is HMAC-SHA256
 * (`subtle.sign("HMAC")`) keyed with the salt, HKDF-Expand is the RFC 5869 chain of
 * HMAC-SHA256 blocks, and the AEAD is `subtle.encrypt/decrypt({name: "AES-GCM"})`. Nothing
 * else (no hand-written curve, hash or cipher).
 *
 * Single-shot use (sequence number 0) is what EchoChat needs; `computeNonce` covers the
 * other sequence numbers of the RFC's vectors.
 */

import { concat, i2osp, utf8 } from "./encoding.js";
import { exportPublic, importPublic } from "./keys.js";

/** @typedef {import("./encoding.js").Bytes} Bytes */

const subtle = globalThis.crypto.subtle;

export const MODE_BASE = 0x00;
export const KEM_X25519_HKDF_SHA256 = 0x0020;
export const KDF_HKDF_SHA256 = 0x0001;
export const AEAD_AES_128_GCM = 0x0001;
export const AEAD_AES_256_GCM = 0x0002;

const N_H = 32; // SHA-256 output length, HKDF-SHA256's Nh
const N_SECRET = 32; // DHKEM(X25519)'s Nsecret
const N_N = 12; // AES-GCM nonce length
const N_T = 16; // AES-GCM tag length
/** @type {Record<number, number>} AEAD id -> Nk */
const N_K = { [AEAD_AES_128_GCM]: 16, [AEAD_AES_256_GCM]: 32 };

const HPKE_V1 = utf8("HPKE-v1");
const KEM_SUITE_ID = concat(utf8("KEM"), i2osp(KEM_X25519_HKDF_SHA256, 2));
const EMPTY = new Uint8Array(0);

/** A DH, decapsulation or AEAD failure (RFC 9180's DecapError / OpenError / ...). */
export class HpkeError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "HpkeError";
  }
}

/**
 * suite_id = "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2)
 * @param {number} aeadId
 * @returns {Bytes}
 */
export function suiteId(aeadId) {
  nk(aeadId);
  return concat(
    utf8("HPKE"),
    i2osp(KEM_X25519_HKDF_SHA256, 2),
    i2osp(KDF_HKDF_SHA256, 2),
    i2osp(aeadId, 2),
  );
}

/** @param {number} aeadId @returns {number} */
function nk(aeadId) {
  const size = N_K[aeadId];
  if (size === undefined) {
    throw new RangeError(`unsupported AEAD id ${aeadId}`);
  }
  return size;
}

/**
 * HMAC-SHA256(key, data).
 * @param {Bytes} key
 * @param {Bytes} data
 * @returns {Promise<Bytes>}
 */
async function hmac(key, data) {
  const k = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", k, data));
}

/**
 * HKDF-Extract(salt, ikm) = HMAC-Hash(salt, ikm) (RFC 5869); an empty salt means Nh zero
 * bytes (WebCrypto refuses an empty HMAC key; HMAC pads the key with zeros anyway).
 * @param {Bytes} salt
 * @param {Bytes} ikm
 * @returns {Promise<Bytes>}
 */
export function extract(salt, ikm) {
  return hmac(salt.length ? salt : new Uint8Array(N_H), ikm);
}

/**
 * HKDF-Expand(prk, info, length) (RFC 5869): T(i) = HMAC(prk, T(i-1) || info || i).
 * @param {Bytes} prk
 * @param {Bytes} info
 * @param {number} length at most 255 * Nh
 * @returns {Promise<Bytes>}
 */
export async function expand(prk, info, length) {
  if (length > 255 * N_H) {
    throw new RangeError("HKDF-Expand length too large");
  }
  const out = new Uint8Array(length);
  let block = EMPTY;
  for (let i = 1, at = 0; at < length; i += 1) {
    block = await hmac(prk, concat(block, info, Uint8Array.of(i)));
    out.set(block.subarray(0, Math.min(N_H, length - at)), at);
    at += N_H;
  }
  return out;
}

/**
 * LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" || suite_id || label || ikm)
 * @param {Bytes} suite
 * @param {Bytes} salt
 * @param {string} label
 * @param {Bytes} ikm
 * @returns {Promise<Bytes>}
 */
export function labeledExtract(suite, salt, label, ikm) {
  return extract(salt, concat(HPKE_V1, suite, utf8(label), ikm));
}

/**
 * LabeledExpand(prk, label, info, L) =
 *   Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L)
 * @param {Bytes} suite
 * @param {Bytes} prk
 * @param {string} label
 * @param {Bytes} info
 * @param {number} length
 * @returns {Promise<Bytes>}
 */
export function labeledExpand(suite, prk, label, info, length) {
  return expand(prk, concat(i2osp(length, 2), HPKE_V1, suite, utf8(label), info), length);
}

/**
 * DH(sk, pk): X25519 through WebCrypto (which refuses an all-zero result, as RFC 9180 asks).
 * @param {CryptoKey} privateKey
 * @param {Bytes} publicKey raw 32 bytes
 * @returns {Promise<Bytes>}
 */
async function dh(privateKey, publicKey) {
  try {
    const pk = await importPublic("X25519", publicKey);
    return new Uint8Array(await subtle.deriveBits({ name: "X25519", public: pk }, privateKey, 256));
  } catch (error) {
    throw new HpkeError(`X25519 failed: ${error instanceof Error ? error.name : error}`);
  }
}

/**
 * DHKEM's ExtractAndExpand(dh, kem_context).
 * @param {Bytes} dhValue
 * @param {Bytes} kemContext enc || pkRm
 * @returns {Promise<Bytes>} shared_secret
 */
export async function extractAndExpand(dhValue, kemContext) {
  const eaePrk = await labeledExtract(KEM_SUITE_ID, EMPTY, "eae_prk", dhValue);
  return labeledExpand(KEM_SUITE_ID, eaePrk, "shared_secret", kemContext, N_SECRET);
}

/**
 * DHKEM's DeriveKeyPair(ikm) for X25519: the raw private key (RFC 9180 7.1.3). The public
 * key is WebCrypto's business (`keys.keyPairFromPrivate`).
 * @param {Bytes} ikm
 * @returns {Promise<Bytes>}
 */
export async function derivePrivateKey(ikm) {
  const dkpPrk = await labeledExtract(KEM_SUITE_ID, EMPTY, "dkp_prk", ikm);
  return labeledExpand(KEM_SUITE_ID, dkpPrk, "sk", EMPTY, 32);
}

/**
 * An ephemeral key pair for Encap (an extra seam so that tests can pass the RFC's).
 * @typedef {object} Ephemeral
 * @property {CryptoKey} privateKey X25519, usage deriveBits
 * @property {Bytes} publicKey raw 32 bytes (= enc)
 */

/**
 * Encap(pkR): a fresh ephemeral X25519 key from `generateKey` (or the one given).
 * @param {Bytes} pkR the recipient's raw public key
 * @param {Ephemeral} [ephemeral]
 * @returns {Promise<{sharedSecret: Bytes, enc: Bytes}>}
 */
export async function encap(pkR, ephemeral) {
  let pair = ephemeral;
  if (pair === undefined) {
    const fresh = /** @type {CryptoKeyPair} */ (
      await subtle.generateKey({ name: "X25519" }, false, ["deriveBits"])
    );
    pair = { privateKey: fresh.privateKey, publicKey: await exportPublic(fresh.publicKey) };
  }
  const enc = pair.publicKey;
  const dhValue = await dh(pair.privateKey, pkR);
  return { sharedSecret: await extractAndExpand(dhValue, concat(enc, pkR)), enc };
}

/**
 * Decap(enc, skR). The recipient's public key is needed for kem_context and, with a
 * non-extractable private key, cannot be recomputed: pass it.
 * @param {Bytes} enc
 * @param {CryptoKey} skR
 * @param {Bytes} pkR
 * @returns {Promise<Bytes>} shared_secret
 */
export async function decap(enc, skR, pkR) {
  if (enc.length !== 32) {
    throw new HpkeError("enc must be 32 bytes");
  }
  const dhValue = await dh(skR, enc);
  return extractAndExpand(dhValue, concat(enc, pkR));
}

/**
 * The key schedule's outputs.
 * @typedef {object} Schedule
 * @property {Bytes} keyScheduleContext mode || psk_id_hash || info_hash
 * @property {Bytes} secret
 * @property {Bytes} key Nk bytes
 * @property {Bytes} baseNonce 12 bytes
 * @property {Bytes} exporterSecret
 */

/**
 * KeySchedule(mode_base, shared_secret, info, psk = "", psk_id = "").
 * @param {number} aeadId
 * @param {Bytes} sharedSecret
 * @param {Bytes} info
 * @returns {Promise<Schedule>}
 */
export async function keySchedule(aeadId, sharedSecret, info) {
  const suite = suiteId(aeadId);
  const pskIdHash = await labeledExtract(suite, EMPTY, "psk_id_hash", EMPTY);
  const infoHash = await labeledExtract(suite, EMPTY, "info_hash", info);
  const keyScheduleContext = concat(Uint8Array.of(MODE_BASE), pskIdHash, infoHash);
  const secret = await labeledExtract(suite, sharedSecret, "secret", EMPTY);
  return {
    keyScheduleContext,
    secret,
    key: await labeledExpand(suite, secret, "key", keyScheduleContext, nk(aeadId)),
    baseNonce: await labeledExpand(suite, secret, "base_nonce", keyScheduleContext, N_N),
    exporterSecret: await labeledExpand(suite, secret, "exp", keyScheduleContext, N_H),
  };
}

/**
 * The nonce of sequence number `seq`: base_nonce XOR I2OSP(seq, Nn).
 * @param {Bytes} baseNonce
 * @param {number} seq
 * @returns {Bytes}
 */
export function computeNonce(baseNonce, seq) {
  const seqBytes = i2osp(seq, N_N);
  return baseNonce.map((b, i) => b ^ seqBytes[i]);
}

/**
 * AES-GCM encryption (ciphertext || 16-byte tag).
 * @param {Bytes} key 16 or 32 bytes
 * @param {Bytes} nonce 12 bytes
 * @param {Bytes} aad
 * @param {Bytes} plaintext
 * @returns {Promise<Bytes>}
 */
export async function aeadSeal(key, nonce, aad, plaintext) {
  const k = await subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
  const params = { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 };
  return new Uint8Array(await subtle.encrypt(params, k, plaintext));
}

/**
 * AES-GCM decryption; an {@link HpkeError} when the tag does not verify.
 * @param {Bytes} key
 * @param {Bytes} nonce
 * @param {Bytes} aad
 * @param {Bytes} ciphertext ciphertext || tag
 * @returns {Promise<Bytes>}
 */
export async function aeadOpen(key, nonce, aad, ciphertext) {
  if (ciphertext.length < N_T) {
    throw new HpkeError("the ciphertext is shorter than its tag");
  }
  const k = await subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"]);
  const params = { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 };
  try {
    return new Uint8Array(await subtle.decrypt(params, k, ciphertext));
  } catch {
    throw new HpkeError("the AEAD does not open");
  }
}

/**
 * SetupBaseS(pkR, info): the sender's context (its key, base nonce, ...) and enc.
 * @param {number} aeadId
 * @param {Bytes} pkR
 * @param {Bytes} info
 * @param {Ephemeral} [ephemeral] tests only
 * @returns {Promise<Schedule & {enc: Bytes, sharedSecret: Bytes}>}
 */
export async function setupBaseS(aeadId, pkR, info, ephemeral) {
  const { sharedSecret, enc } = await encap(pkR, ephemeral);
  return { ...(await keySchedule(aeadId, sharedSecret, info)), enc, sharedSecret };
}

/**
 * SetupBaseR(enc, skR, info): the recipient's context.
 * @param {number} aeadId
 * @param {Bytes} enc
 * @param {CryptoKey} skR
 * @param {Bytes} pkR
 * @param {Bytes} info
 * @returns {Promise<Schedule & {sharedSecret: Bytes}>}
 */
export async function setupBaseR(aeadId, enc, skR, pkR, info) {
  const sharedSecret = await decap(enc, skR, pkR);
  return { ...(await keySchedule(aeadId, sharedSecret, info)), sharedSecret };
}

/**
 * Single-shot SealBase(pkR, info, aad, pt) at sequence number 0.
 * @param {number} aeadId
 * @param {Bytes} pkR
 * @param {Bytes} info
 * @param {Bytes} aad
 * @param {Bytes} plaintext
 * @param {Ephemeral} [ephemeral] tests only
 * @returns {Promise<{enc: Bytes, ciphertext: Bytes}>}
 */
export async function seal(aeadId, pkR, info, aad, plaintext, ephemeral) {
  const context = await setupBaseS(aeadId, pkR, info, ephemeral);
  const ciphertext = await aeadSeal(context.key, context.baseNonce, aad, plaintext);
  return { enc: context.enc, ciphertext };
}

/**
 * Single-shot OpenBase(enc, skR, info, aad, ct) at sequence number 0; an
 * {@link HpkeError} if it does not open.
 * @param {number} aeadId
 * @param {Bytes} enc
 * @param {CryptoKey} skR
 * @param {Bytes} pkR the recipient's own raw public key
 * @param {Bytes} info
 * @param {Bytes} aad
 * @param {Bytes} ciphertext
 * @returns {Promise<Bytes>}
 */
export async function open(aeadId, enc, skR, pkR, info, aad, ciphertext) {
  const context = await setupBaseR(aeadId, enc, skR, pkR, info);
  return aeadOpen(context.key, context.baseNonce, aad, ciphertext);
}
