// @ts-check
/**
 * The safety-number dialog (markup in templates/_key_dialogs.html, #safety-dialog): the
 * fingerprint of both users' identity keys as 12 groups of 5 digits and as a QR code
 * (docs/e2ee.md section 7), whether the buddy is verified, "Mark as verified" / "Unmark",
 * the buddy's devices (new ones marked), and, when the buddy's keys changed, a warning with
 * "Accept the new keys". DOM only: the keys are state/keysession.js's.
 */

import { byId, el } from "./dom.js";
import { sentence, setStatus } from "./forms.js";
import { openDialog } from "./modal.js";
import { encodeQr, qrSvg } from "./qr.js";

/** @typedef {import("../state/keysession.js").KeySession} KeySession */

/** The peer the dialog shows now, so that a late answer for another peer is dropped. */
let showing = "";

/**
 * @param {string} iso
 */
function day(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? ""
    : date.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

/**
 * Open the safety number of the signed-in user and `peer`.
 * @param {KeySession} session
 * @param {string} peer
 */
export function showSafetyNumber(session, peer) {
  const dialog = byId("safety-dialog", HTMLDialogElement);
  const status = byId("safety-status", HTMLElement);
  const digits = byId("safety-digits", HTMLElement);
  const qr = byId("safety-qr", HTMLElement);
  const devices = byId("safety-devices", HTMLElement);
  const verify = byId("safety-verify", HTMLButtonElement);
  const accept = byId("safety-accept", HTMLButtonElement);
  showing = peer;
  byId("safety-title", HTMLElement).textContent = `Safety number with ${peer}`;
  byId("safety-intro", HTMLElement).textContent =
    `Compare these numbers with ${peer}'s, in person or on a call you trust (or scan each ` +
    `other's code). If they match, nobody is listening in: mark ${peer} as verified.`;
  byId("safety-devices-title", HTMLElement).textContent = `${peer}'s devices`;
  setStatus(status, "");
  digits.replaceChildren();
  qr.replaceChildren();
  devices.replaceChildren();
  byId("safety-changed", HTMLElement).hidden = true;
  byId("safety-state", HTMLElement).textContent = "";
  verify.hidden = true;
  accept.hidden = true;
  dialog.dataset.loading = "true";
  openDialog(dialog, /** @type {HTMLElement} */ (dialog.querySelector("[data-dialog-close]")));
  fill(session, peer).catch((error) => {
    if (showing === peer) {
      dialog.dataset.loading = "false";
      setStatus(status, sentence(error?.message || "the keys could not be loaded"), "error");
    }
  });

  verify.onclick = async () => {
    const verified = dialog.dataset.verified !== "true";
    verify.disabled = true;
    try {
      await session.setVerified(peer, verified);
      await fill(session, peer);
      setStatus(
        status,
        verified ? `${peer} is marked as verified.` : `${peer} is no longer marked as verified.`,
        "success",
      );
    } catch (error) {
      setStatus(status, sentence(/** @type {Error} */ (error).message), "error");
    } finally {
      verify.disabled = false;
    }
  };
  accept.onclick = async () => {
    accept.disabled = true;
    try {
      await session.acceptIdentity(peer);
      await fill(session, peer);
      setStatus(status, `You accepted ${peer}'s new keys.`, "success");
    } catch (error) {
      setStatus(status, sentence(/** @type {Error} */ (error).message), "error");
    } finally {
      accept.disabled = false;
    }
  };
}

/**
 * Fetch and show the number, the state and the devices.
 * @param {KeySession} session
 * @param {string} peer
 */
async function fill(session, peer) {
  const dialog = byId("safety-dialog", HTMLDialogElement);
  const info = await session.trust(peer);
  const number = await session.safetyNumber(peer);
  if (showing !== peer) {
    return;
  }
  dialog.dataset.loading = "false";
  dialog.dataset.verified = String(info.verified);
  dialog.dataset.changed = String(info.identityChanged);
  byId("safety-digits", HTMLElement).replaceChildren(
    ...number.groups.map((group) => el("li", { className: "safety__group", text: group })),
  );
  const code = encodeQr(number.qrPayload, { ecc: "M" });
  byId("safety-qr", HTMLElement).replaceChildren(
    qrSvg(code, { label: `QR code of the safety number with ${peer}` }),
  );
  const changed = byId("safety-changed", HTMLElement);
  changed.hidden = !info.identityChanged;
  byId("safety-changed-title", HTMLElement).textContent = `${peer}'s keys changed.`;
  const state = byId("safety-state", HTMLElement);
  state.dataset.verified = String(info.verified);
  state.textContent = info.identityChanged
    ? "New keys, not accepted yet"
    : info.verified
      ? `Verified: you compared safety numbers with ${peer}`
      : "Not verified yet";
  const verify = byId("safety-verify", HTMLButtonElement);
  verify.hidden = false;
  verify.textContent = info.identityChanged
    ? "Accept as verified"
    : info.verified
      ? "Unmark as verified"
      : "Mark as verified";
  byId("safety-accept", HTMLButtonElement).hidden = !info.identityChanged;
  byId("safety-devices", HTMLElement).replaceChildren(
    ...info.devices.map((device) =>
      el("li", { className: "safety__device" }, [
        el("span", { className: "safety__device-name", text: device.label || "Device" }),
        el("span", {
          className: "safety__device-id",
          text:
            `${device.device_id.slice(0, 8)}…` +
            (device.created_at ? ` · added ${day(device.created_at)}` : ""),
        }),
        ...(device.isNew ? [el("span", { className: "safety__new", text: "new" })] : []),
      ]),
    ),
  );
}
