// @ts-check
/**
 * The Settings tab: the server's live settings (GET /admin/settings) in a form; Save sends
 * only what changed (PATCH /admin/settings), checked first in the page (state.js
 * `settingsChanges`), and the server's refusals go next to their fields. A field the server
 * does not offer is hidden. The GIF key is write-only: the form never holds it.
 */

import { byId, el } from "/static/js/ui/dom.js";
import {
  clearErrors,
  problemText,
  setStatus,
  showProblems,
  setBusy,
} from "/static/js/ui/forms.js";
import { ApiError } from "/static/js/net/api.js";
import * as net from "../net.js";
import {
  bytesInWords,
  normalizeSettings,
  settingFields,
  settingLabel,
  settingsChanges,
} from "../state.js";

/** Labels of the settings the template has no field for (added as the server offers them). */
const LABELS = {
  group_max_members: "Private group size",
  encrypted_group_max_members: "Encrypted group size",
  rate_limit_login_account: "Sign-ins per account",
  rate_limit_reset_ip: "Password resets per IP address",
  rate_limit_reset_account: "Password resets per account",
  rate_limit_backup_account: "Key backups per account",
  rate_limit_buzz: "BUZZ!es",
};

export class SettingsTab {
  constructor() {
    this.form = byId("admin-settings-form", HTMLFormElement);
    this.status = byId("admin-settings-status", HTMLElement);
    /** @type {Record<string, import("../state.js").SettingValue>} */
    this.current = {};
    this.form.noValidate = true;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    byId("admin-settings-reset", HTMLButtonElement).addEventListener("click", () => {
      clearErrors(this.form);
      setStatus(this.status, "");
      this.fill();
    });
    const upload = this.input("upload_max_bytes");
    upload?.addEventListener("input", () => this.describeUpload());
  }

  /** @param {string} name */
  input(name) {
    const node = this.form.elements.namedItem(name);
    return node instanceof HTMLInputElement || node instanceof HTMLSelectElement ? node : null;
  }

  async load() {
    setStatus(this.status, "");
    try {
      this.current = normalizeSettings(await net.settings());
      this.fill();
    } catch (error) {
      setStatus(this.status, problemText(error), "error");
    }
  }

  /**
   * A field for a setting the template does not have, in the fieldset of its kind.
   * @param {import("../state.js").SettingField} field
   */
  addField(field) {
    const setting = this.current[field.name];
    const id = `admin-set-${field.name.replaceAll("_", "-")}`;
    const label = LABELS[/** @type {keyof typeof LABELS} */ (field.name)] ?? settingLabel(field.name);
    const input = el("input", {
      className: "field__input",
      attrs: {
        id,
        name: field.name,
        type: field.kind === "int" ? "number" : "text",
        autocomplete: "off",
        spellcheck: "false",
        "aria-describedby": `${id}-hint`,
      },
    });
    const box = el("div", { className: "field" }, [
      el("label", { className: "field__label", text: label, attrs: { for: id } }),
      input,
      el("p", { className: "field__hint", text: setting.description, attrs: { id: `${id}-hint` } }),
    ]);
    const home = field.kind === "rate" ? "admin-set-rates" : "admin-set-rooms";
    byId(home, HTMLElement).append(box);
  }

  fill() {
    const fields = settingFields(this.current);
    for (const field of fields) {
      if (!this.input(field.name) && ["int", "rate"].includes(field.kind)) {
        this.addField(field);
      }
    }
    for (const field of fields) {
      const input = this.input(field.name);
      if (!input) {
        continue;
      }
      const setting = this.current[field.name];
      const box = /** @type {HTMLElement | null} */ (input.closest(".field"));
      if (input instanceof HTMLInputElement && input.type === "checkbox") {
        input.checked = Boolean(setting.value);
      } else if (field.kind === "secret") {
        input.value = "";
        /** @type {HTMLInputElement} */ (input).placeholder = setting.set
          ? "A key is set (type to replace it)"
          : "No key set";
      } else {
        input.value = setting.value === null || setting.value === undefined
          ? ""
          : String(setting.value);
      }
      if (box) {
        box.dataset.source = setting.source;
        box.title =
          setting.source === "admin"
            ? "Changed in this panel (kept in the database)"
            : "From the server's configuration";
      }
    }
    // A field of the template that this server does not offer is hidden.
    for (const box of this.form.querySelectorAll(".field")) {
      const named = box.querySelector("[name]");
      const name = named?.getAttribute("name") ?? "";
      box.toggleAttribute("hidden", !(name in this.current));
    }
    this.describeUpload();
  }

  describeUpload() {
    const upload = this.input("upload_max_bytes");
    const hint = document.getElementById("admin-set-upload-hint");
    if (upload && hint) {
      hint.textContent = bytesInWords(Number(upload.value)) || "A number of bytes.";
    }
  }

  async save() {
    clearErrors(this.form);
    setStatus(this.status, "");
    /** @type {Record<string, string>} */
    const values = {};
    for (const [key, value] of new FormData(this.form)) {
      values[key] = typeof value === "string" ? value : "";
    }
    const { changes, problems } = settingsChanges(this.current, values);
    if (problems.length) {
      showProblems(this.form, this.status, problems);
      return;
    }
    if (!Object.keys(changes).length) {
      setStatus(this.status, "Nothing changed.");
      return;
    }
    setBusy(this.form, true);
    try {
      const answer = await net.updateSettings(changes);
      this.current = answer ? normalizeSettings(answer) : this.current;
      this.fill();
      const names = Object.keys(changes).length;
      setStatus(
        this.status,
        `Saved ${names} setting${names === 1 ? "" : "s"}; every server process uses them now.`,
        "success",
      );
      this.status.scrollIntoView({ block: "nearest" });
    } catch (error) {
      if (error instanceof ApiError && error.fields.length) {
        // The server names the setting (details.field): the message goes next to it.
        showProblems(this.form, this.status, error.fields);
      } else {
        setStatus(this.status, problemText(error), "error");
      }
    } finally {
      setBusy(this.form, false);
    }
  }
}
