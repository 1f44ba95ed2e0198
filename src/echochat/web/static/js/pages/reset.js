// @ts-check
/**
 * /reset: with `?token=` (the emailed link) a new password for that link; without it, the
 * PIN form for a reset this browser asked for.
 */

import { api } from "../net/api.js";
import { bindForm, passwordsMatch } from "../ui/forms.js";
import { bindPinForm } from "./pin-form.js";

const token = new URLSearchParams(window.location.search).get("token") ?? "";
const linkForm = document.getElementById("reset-form");
const linkSection = document.getElementById("link-section");
const pinSection = document.getElementById("pin-section");
const pinForm = document.getElementById("pin-form");
const done = document.getElementById("reset-done");
const deadLink = document.getElementById("link-invalid");

if (
  linkForm instanceof HTMLFormElement &&
  linkSection instanceof HTMLElement &&
  pinSection instanceof HTMLElement &&
  pinForm instanceof HTMLFormElement &&
  done instanceof HTMLElement &&
  deadLink instanceof HTMLElement
) {
  linkSection.hidden = !token;
  pinSection.hidden = Boolean(token);
  bindForm(
    linkForm,
    async ({ password }) => {
      try {
        await api("POST", "/auth/password/reset", { token, password });
      } catch (error) {
        if (/** @type {{code?: string}} */ (error).code !== "reset_invalid") {
          throw error;
        }
        linkSection.hidden = true;
        deadLink.hidden = false;
        deadLink.focus();
        return;
      }
      linkSection.hidden = true;
      done.hidden = false;
      done.focus();
    },
    { check: passwordsMatch("password", "confirm") },
  );
  bindPinForm(pinForm, done, [pinSection]);
}
