// @ts-check
/**
 * The dialogs and indicators of the E2EE keys (markup in templates/_key_dialogs.html): set up
 * keys at the first sign-in (a recovery key shown once, or a passphrase), unlock a new browser
 * from the key backup, start fresh with a plain explanation, "encryption unavailable" (no
 * secure context, server unreachable), the padlock in the buddy-list window's title bar and
 * the "locked" bar above the list. DOM only: the work is done by state/keysession.js.
 *
 * PBKDF2 (600,000 iterations) takes a moment in each of those steps, so every one shows a
 * "working" bar and disables its buttons meanwhile.
 */

import { ApiError } from "../net/api.js";
import { E2EEError, MIN_PASSPHRASE } from "../crypto/e2ee.js";
import { byId, el } from "./dom.js";
import { clearErrors, sentence, setFieldError, setStatus, waitInWords } from "./forms.js";
import { openDialog } from "./modal.js";

/** @typedef {import("../state/keysession.js").KeySession} KeySession */

const NOTICE_CLEAR_MS = 8000;

/**
 * Words for a failure of set-up, restore or start-fresh.
 * @param {unknown} error
 */
function failure(error) {
  if (error instanceof E2EEError) {
    return sentence(error.message);
  }
  if (error instanceof ApiError) {
    if (error.status === 429) {
      return error.retryAfter
        ? `Too many attempts; try again in ${waitInWords(error.retryAfter)}.`
        : "Too many attempts; wait a while, then try again.";
    }
    return sentence(error.message);
  }
  console.error(error);
  return "Something went wrong on this page; reload it and try again.";
}

/**
 * Show a "working" bar (PBKDF2 runs) and disable the form's buttons, or hide it again.
 * @param {HTMLFormElement} form
 * @param {HTMLElement} bar
 * @param {string} text "" when done
 */
function working(form, bar, text) {
  const busy = text !== "";
  form.setAttribute("aria-busy", String(busy));
  for (const button of form.querySelectorAll("button")) {
    button.disabled = busy;
  }
  for (const input of form.querySelectorAll("input")) {
    input.readOnly = busy;
  }
  bar.hidden = !busy;
  const label = bar.querySelector(".keys-working__text");
  if (label) {
    label.textContent = text;
  }
}

export class KeySetup {
  /** @param {KeySession} session */
  constructor(session) {
    this.session = session;
    this.setupDialog = byId("keys-setup-dialog", HTMLDialogElement);
    this.restoreDialog = byId("keys-restore-dialog", HTMLDialogElement);
    this.freshDialog = byId("keys-fresh-dialog", HTMLDialogElement);
    this.noticeDialog = byId("keys-notice-dialog", HTMLDialogElement);
    /** "setup": the first keys; "fresh": new keys replacing the old ones */
    this.mode = /** @type {"setup" | "fresh"} */ ("setup");
    /** The recovery key offered (kept while the page lives, until it is used). */
    this.recovery = "";
    this.lock = this.buildLock();
    this.alert = this.buildAlert();
    this.bindSetup();
    this.bindRestore();
    this.bindFresh();
    byId("keys-notice-retry", HTMLButtonElement).addEventListener("click", () => {
      this.noticeDialog.close();
      this.session.retry();
    });
    session.on("state", () => this.showState());
    session.on("prompt", () => this.prompt());
    // Closing a key dialog while still locked ("Not now", Escape, the close box) puts it
    // off for this tab: it does not come back by itself at every page load.
    for (const dialog of [this.setupDialog, this.restoreDialog, this.freshDialog]) {
      dialog.addEventListener("close", () => {
        if (!this.session.unlocked) {
          this.session.putOff();
        }
      });
    }
    this.showState();
  }

  // --- the padlock and the "locked" bar ------------------------------------------------------

  /** The padlock button in the buddy-list window's title bar. */
  buildLock() {
    const button = el("button", {
      className: "keys-lock",
      attrs: { type: "button", id: "keys-lock" },
    });
    button.addEventListener("click", () => this.session.promptUnlock());
    const windowEl = document.getElementById("buddy-window");
    const bar = windowEl?.querySelector(".window__titlebar");
    if (bar) {
      bar.insertBefore(button, bar.querySelector(".window__controls"));
    }
    return button;
  }

  /** The bar above the buddy list while the keys are locked. */
  buildAlert() {
    const text = el("p", { className: "keys-alert__text", attrs: { id: "keys-alert-text" } });
    const action = el("button", {
      className: "keys-alert__button",
      text: "Unlock",
      attrs: { type: "button", id: "keys-alert-open" },
    });
    action.addEventListener("click", () => this.session.promptUnlock());
    const alert = el(
      "div",
      { className: "keys-alert", attrs: { id: "keys-alert", role: "status", hidden: true } },
      [
        el("span", { className: "keys-alert__icon", attrs: { "aria-hidden": "true" } }),
        text,
        action,
      ],
    );
    const anchor = document.getElementById("request-alert");
    anchor?.parentElement?.insertBefore(alert, anchor);
    return alert;
  }

  showState() {
    const { phase } = this.session;
    const unlocked = phase === "unlocked";
    const starting = phase === "starting";
    this.lock.dataset.state = unlocked ? "unlocked" : starting ? "starting" : "locked";
    const label = unlocked
      ? "Encryption: unlocked in this browser"
      : starting
        ? "Encryption: loading your keys…"
        : "Encryption: locked — select to unlock";
    this.lock.setAttribute("aria-label", label);
    this.lock.title = label;
    this.alert.hidden = unlocked || starting;
    const text = byId("keys-alert-text", HTMLElement);
    const button = byId("keys-alert-open", HTMLButtonElement);
    button.textContent =
      {
        setup: "Set up",
        insecure: "Why?",
        no_backup: "Options",
        unavailable: "Details",
      }[phase] ?? "Unlock";
    text.textContent = {
      setup: "Set up encryption to send and read private messages.",
      restore: "Your messages are locked in this browser.",
      stale: "Your keys changed in another browser: unlock again.",
      no_backup: "Your keys cannot be restored here.",
      insecure: "Encryption needs a secure connection (https).",
      unavailable: "Your encryption keys could not be loaded.",
    }[phase] ?? "";
  }

  /** Open the dialog the session's phase calls for. */
  prompt() {
    const { phase } = this.session;
    if (phase === "setup") {
      this.openSetup("setup");
    } else if (phase === "restore" || phase === "stale") {
      this.openRestore();
    } else if (phase === "no_backup") {
      this.openFresh(
        "Your account already has encryption keys, made in another browser or app, but no " +
          "backup of them exists, so they cannot be brought to this browser.",
      );
    } else if (phase === "insecure") {
      this.openNotice("Encryption unavailable", this.session.problem, false);
    } else if (phase === "unavailable") {
      const wait = this.session.retryAfter;
      const when = wait
        ? ` You can try again in ${waitInWords(wait)}.`
        : " Wait a while, then try again.";
      this.openNotice("Encryption unavailable", `${this.session.problem}${when}`, true);
    } else if (phase === "unlocked") {
      this.openNotice(
        "Encryption is on",
        "Your keys are unlocked in this browser. Your private messages are end-to-end " +
          "encrypted: only you and your buddy can read them. Compare safety numbers in a " +
          "conversation window to be sure you are talking to the right person.",
        false,
      );
    }
  }

  /**
   * @param {string} title
   * @param {string} text
   * @param {boolean} retry
   */
  openNotice(title, text, retry) {
    byId("keys-notice-title", HTMLElement).textContent = title;
    byId("keys-notice-text", HTMLElement).textContent = text;
    byId("keys-notice-retry", HTMLButtonElement).hidden = !retry;
    openDialog(this.noticeDialog);
  }

  /** @param {string} message */
  announce(message) {
    const notice = document.getElementById("buddy-notice");
    if (notice) {
      setStatus(notice, message, "success");
      window.setTimeout(() => setStatus(notice, ""), NOTICE_CLEAR_MS);
    }
  }

  // --- set up (first sign-in) and start fresh ------------------------------------------------

  bindSetup() {
    const recoveryForm = byId("keys-recovery-form", HTMLFormElement);
    const passForm = byId("keys-passphrase-form", HTMLFormElement);
    recoveryForm.noValidate = true;
    passForm.noValidate = true;
    for (const radio of this.setupDialog.querySelectorAll("input[name=keys-secret-kind]")) {
      radio.addEventListener("change", () => this.showKind());
    }
    byId("keys-recovery-copy", HTMLButtonElement).addEventListener("click", () => this.copy());
    const recoveryStatus = byId("keys-recovery-status", HTMLElement);
    recoveryForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (recoveryForm.getAttribute("aria-busy") === "true") {
        return;
      }
      clearErrors(recoveryForm);
      setStatus(recoveryStatus, "");
      if (!byId("keys-recovery-saved", HTMLInputElement).checked) {
        setFieldError(recoveryForm, "saved", "Tick the box once you have saved the key");
        byId("keys-recovery-saved", HTMLInputElement).focus();
        return;
      }
      await this.submitSetup(recoveryForm, recoveryStatus, "keys-recovery-working", this.recovery);
    });
    const passStatus = byId("keys-passphrase-status", HTMLElement);
    passForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (passForm.getAttribute("aria-busy") === "true") {
        return;
      }
      clearErrors(passForm);
      setStatus(passStatus, "");
      const pass = byId("keys-passphrase", HTMLInputElement);
      const confirm = byId("keys-passphrase-confirm", HTMLInputElement);
      if ([...pass.value.normalize("NFC")].length < MIN_PASSPHRASE) {
        setFieldError(passForm, "passphrase", `Use at least ${MIN_PASSPHRASE} characters`);
        pass.focus();
        return;
      }
      if (confirm.value !== pass.value) {
        setFieldError(passForm, "confirm", "The two passphrases do not match");
        confirm.focus();
        return;
      }
      await this.submitSetup(passForm, passStatus, "keys-passphrase-working", pass.value);
    });
  }

  /**
   * @param {HTMLFormElement} form
   * @param {HTMLElement} status
   * @param {string} barId
   * @param {string} secret
   */
  async submitSetup(form, status, barId, secret) {
    const fresh = this.mode === "fresh";
    const bar = byId(barId, HTMLElement);
    working(form, bar, "Encrypting your key backup… this takes a few seconds.");
    try {
      if (fresh) {
        await this.session.startFresh(secret);
      } else {
        await this.session.setUp(secret);
      }
      this.recovery = "";
      working(form, bar, "");
      this.setupDialog.close();
      this.announce(
        fresh
          ? "You started fresh: new keys are set up and backed up."
          : "Encryption is set up, and your keys are backed up.",
      );
    } catch (error) {
      working(form, bar, "");
      setStatus(status, failure(error), "error");
      status.focus();
      if (error instanceof E2EEError && error.code === "backup_exists") {
        this.setupDialog.close();
        this.openRestore();
      }
    }
  }

  showKind() {
    const passphrase = byId("keys-kind-passphrase", HTMLInputElement).checked;
    byId("keys-recovery-form", HTMLFormElement).hidden = passphrase;
    byId("keys-passphrase-form", HTMLFormElement).hidden = !passphrase;
  }

  async copy() {
    const status = byId("keys-recovery-status", HTMLElement);
    const key = byId("keys-recovery-key", HTMLElement);
    try {
      await navigator.clipboard.writeText(this.recovery);
      setStatus(status, "Copied. Paste it into your password manager or a safe note.", "success");
    } catch {
      const range = document.createRange();
      range.selectNodeContents(key);
      const selection = window.getSelection();
      selection?.removeAllRanges();
      selection?.addRange(range);
      setStatus(status, "Selected: press Ctrl+C (or ⌘C) to copy it.", "info");
    }
  }

  /** @param {"setup" | "fresh"} mode */
  openSetup(mode) {
    this.mode = mode;
    this.recovery ||= this.session.newRecoveryKey();
    byId("keys-recovery-key", HTMLElement).textContent = this.recovery;
    byId("keys-setup-title", HTMLElement).textContent =
      mode === "fresh" ? "Start fresh: new keys" : "Protect your messages";
    byId("keys-setup-fresh", HTMLElement).hidden = mode !== "fresh";
    for (const id of ["keys-recovery-form", "keys-passphrase-form"]) {
      const form = byId(id, HTMLFormElement);
      form.reset();
      clearErrors(form);
      setStatus(form.querySelector("[data-form-status]"), "");
    }
    byId("keys-kind-recovery", HTMLInputElement).checked = true;
    this.showKind();
    openDialog(this.setupDialog, byId("keys-recovery-copy", HTMLButtonElement));
  }

  // --- restore (a new browser) ---------------------------------------------------------------

  bindRestore() {
    const form = byId("keys-restore-form", HTMLFormElement);
    form.noValidate = true;
    const status = byId("keys-restore-status", HTMLElement);
    const input = byId("keys-restore-secret", HTMLInputElement);
    byId("keys-restore-show", HTMLInputElement).addEventListener("change", (event) => {
      input.type = /** @type {HTMLInputElement} */ (event.target).checked ? "text" : "password";
    });
    byId("keys-restore-lost", HTMLButtonElement).addEventListener("click", () => {
      this.restoreDialog.close();
      this.openFresh(
        "Without your recovery key or passphrase, the keys in your backup cannot be opened " +
          "— by you, the server or anyone else.",
      );
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (form.getAttribute("aria-busy") === "true") {
        return;
      }
      clearErrors(form);
      setStatus(status, "");
      if (!input.value.trim()) {
        setFieldError(form, "secret", "Type your recovery key or passphrase");
        input.focus();
        return;
      }
      const bar = byId("keys-restore-working", HTMLElement);
      working(form, bar, "Unlocking your keys… this takes a few seconds.");
      try {
        await this.session.restore(input.value);
        working(form, bar, "");
        input.value = "";
        this.restoreDialog.close();
        this.announce("Your keys are restored: your messages can be read in this browser.");
      } catch (error) {
        working(form, bar, "");
        if (error instanceof E2EEError && error.code === "decrypt_failed") {
          setFieldError(form, "secret", error.message);
          setStatus(status, "Wrong recovery key or passphrase.", "error");
          input.select();
          input.focus();
        } else {
          setStatus(status, failure(error), "error");
          status.focus();
        }
      }
    });
  }

  openRestore() {
    const form = byId("keys-restore-form", HTMLFormElement);
    form.reset();
    clearErrors(form);
    byId("keys-restore-secret", HTMLInputElement).type = "password";
    const status = byId("keys-restore-status", HTMLElement);
    setStatus(status, "");
    const intro = byId("keys-restore-intro", HTMLElement);
    intro.textContent =
      this.session.phase === "stale"
        ? this.session.problem
        : "This browser does not have your encryption keys yet. Type the recovery key or " +
          "passphrase you chose when you set up encryption: your keys come back from your " +
          "backup, and your messages can be read here.";
    openDialog(this.restoreDialog, byId("keys-restore-secret", HTMLInputElement));
  }

  // --- start fresh ---------------------------------------------------------------------------

  bindFresh() {
    byId("keys-fresh-back", HTMLButtonElement).addEventListener("click", () => {
      this.freshDialog.close();
      if (this.session.hasBackup) {
        this.openRestore();
      }
    });
    byId("keys-fresh-go", HTMLButtonElement).addEventListener("click", () => {
      this.freshDialog.close();
      this.openSetup("fresh");
    });
  }

  /** @param {string} reason */
  openFresh(reason) {
    byId("keys-fresh-reason", HTMLElement).textContent = reason;
    // Back to the unlock dialog when there is a backup to unlock; otherwise just close.
    byId("keys-fresh-back", HTMLButtonElement).textContent = this.session.hasBackup
      ? "Back"
      : "Not now";
    openDialog(this.freshDialog, byId("keys-fresh-back", HTMLButtonElement));
  }
}

/**
 * Show the key dialogs and indicators for `session` (pages/chat.js calls this before
 * `session.start()`, which asks for a dialog when one is needed).
 * @param {KeySession} session
 */
export function bindKeySetup(session) {
  return new KeySetup(session);
}
