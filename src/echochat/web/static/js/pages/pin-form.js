// @ts-check
/**
 * The "PIN from the email + new password" form, shared by /forgot (right after asking)
 * and /reset (coming back later in the same browser). The browser proves it is the one
 * that asked with its reset cookie, which it sends by itself.
 */

import { api } from "../net/api.js";
import { bindForm, passwordsMatch } from "../ui/forms.js";

/**
 * @param {HTMLFormElement} form
 * @param {HTMLElement} done shown (and focused) once the password is changed
 * @param {HTMLElement[]} hideWhenDone
 */
export function bindPinForm(form, done, hideWhenDone) {
  bindForm(
    form,
    async ({ pin, password }) => {
      await api("POST", "/auth/password/reset", { pin: pin.trim(), password });
      for (const element of hideWhenDone) {
        element.hidden = true;
      }
      done.hidden = false;
      done.focus();
    },
    {
      check: passwordsMatch("password", "confirm"),
      explain(error) {
        const askAgain = { href: "/forgot", text: "Ask for a new reset" };
        if (error.code === "pin_wrong") {
          const left = Number(error.details.tries_left);
          const tries = Number.isFinite(left) ? `${left} ${left === 1 ? "try" : "tries"} left` : "";
          return { field: "pin", message: `wrong PIN${tries ? `; ${tries}` : ""}` };
        }
        if (error.code === "reset_locked") {
          return { message: "too many wrong PINs: this reset is locked", action: askAgain };
        }
        if (error.code === "reset_invalid") {
          return {
            message: "this PIN has expired, or this browser did not ask for it",
            action: askAgain,
          };
        }
        return null;
      },
    },
  );
}
