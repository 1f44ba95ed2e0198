// @ts-check
/** /forgot: ask for a reset email, then type its PIN right here. */

import { api } from "../net/api.js";
import { bindForm, setStatus } from "../ui/forms.js";
import { bindPinForm } from "./pin-form.js";

const askForm = document.getElementById("forgot-form");
const pinSection = document.getElementById("pin-section");
const pinForm = document.getElementById("pin-form");
const done = document.getElementById("reset-done");

if (
  askForm instanceof HTMLFormElement &&
  pinSection instanceof HTMLElement &&
  pinForm instanceof HTMLFormElement &&
  done instanceof HTMLElement
) {
  const askStatus = /** @type {HTMLElement | null} */ (askForm.querySelector("[data-form-status]"));
  bindForm(askForm, async ({ login }) => {
    await api("POST", "/auth/password/forgot", { login: login.trim() });
    setStatus(
      askStatus,
      "If that account exists, we sent an email with a link and a PIN.",
      "success",
    );
    const again = askForm.querySelector("button[type=submit]");
    if (again) {
      again.textContent = "Send another email";
    }
    pinSection.hidden = false;
    const pin = pinForm.querySelector("input[name=pin]");
    if (pin instanceof HTMLInputElement) {
      pin.focus();
    }
  });
  bindPinForm(pinForm, done, [askForm, pinSection]);
}
