// @ts-check
/**
 * The key backup and the device directory as the key session uses them (docs/e2ee.md 8.4):
 * open a backup (a wrong secret says so), write it as a compare-and-set that merges another
 * browser's write on a conflict, overwrite it (start fresh), publish this browser's device.
 * No DOM, no state of its own: ./keysession.js calls these.
 */

import * as e2ee from "../crypto/e2ee.js";
import { ApiError } from "../net/api.js";

const { E2EEError } = e2ee;

/** @typedef {import("../crypto/e2ee.js").Keyring} Keyring */
/**
 * The HTTP API function (net/api.js `api`).
 * @typedef {(method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", path: string,
 *   body?: unknown) => Promise<any>} Api
 */

/** Tries at a backup write that another browser keeps overtaking (409 backup_conflict). */
export const BACKUP_TRIES = 4;

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

/**
 * The keyring in a backup blob; a wrong secret fails with `decrypt_failed` in words.
 * @param {string} blob
 * @param {string} secret
 * @param {string} me
 * @returns {Promise<Keyring>}
 */
export async function openBackup(blob, secret, me) {
  try {
    return await e2ee.decryptBackup(blob, secret, me);
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
 * @param {unknown} error
 */
function isConflict(error) {
  return error instanceof ApiError && error.code === "backup_conflict";
}

/**
 * Write the backup of `keyring` as a compare-and-set on `expected`; when another browser
 * wrote first (409 backup_conflict), download theirs, open it with the same secret, merge it
 * in (`Keyring.merge`) and try again. The new version.
 * @param {Api} api
 * @param {string} me
 * @param {Keyring} keyring exportable (generated or restored)
 * @param {string} secret
 * @param {number | null} expected
 * @returns {Promise<number>}
 */
export async function saveMerged(api, me, keyring, secret, expected) {
  for (let tries = 0; ; tries += 1) {
    const blob = await e2ee.encryptBackup(keyring, secret, me);
    try {
      const saved = await api("PUT", "/keys/backup", { blob, expected_version: expected });
      return Number(saved.version);
    } catch (error) {
      if (tries >= BACKUP_TRIES || !isConflict(error)) {
        throw error;
      }
    }
    const latest = await api("GET", "/keys/backup");
    keyring.merge(await openBackup(String(latest.blob), secret, me));
    expected = Number(latest.version);
  }
}

/**
 * Replace the backup with `blob` whatever version is there (starting fresh: the old keys
 * are meant to go). The new version.
 * @param {Api} api
 * @param {string} blob
 * @param {number | null} expected the version last read (null: none)
 * @returns {Promise<number>}
 */
export async function overwriteBackup(api, blob, expected) {
  for (let tries = 0; ; tries += 1) {
    try {
      const saved = await api("PUT", "/keys/backup", { blob, expected_version: expected });
      return Number(saved.version);
    } catch (error) {
      if (tries >= BACKUP_TRIES || !(error instanceof ApiError) || !isConflict(error)) {
        throw error;
      }
      const latest = error.details.version;
      expected = typeof latest === "number" ? latest : null;
    }
  }
}

/**
 * Publish one device of `keyring` (`PUT /keys/devices/{id}`, certified by the identity key,
 * labelled with this browser); `reset` replaces the account's identity (start fresh).
 * @param {Api} api
 * @param {string} me
 * @param {Keyring} keyring
 * @param {string} deviceId
 * @param {boolean} reset
 */
export async function publishDevice(api, me, keyring, deviceId, reset) {
  const body = await keyring.publishedDevice(me, deviceId);
  await api("PUT", `/keys/devices/${encodeURIComponent(deviceId)}`, {
    ...body,
    label: deviceLabel(),
    reset_identity: reset,
  });
}
