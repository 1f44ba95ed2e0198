// @ts-check
/** "Sign out" buttons: end this browser's session, then go to the sign-in page. */

import { api } from "../net/api.js";
import { leave } from "../ui/navigate.js";

/**
 * @param {HTMLButtonElement} button
 * @param {(message: string) => void} report shows a failure to the user
 */
export function bindSignOut(button, report) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api("POST", "/auth/logout", {});
    } catch (error) {
      const status = /** @type {{status?: number}} */ (error).status;
      if (status !== 401) {
        // The session is still alive: stay, and say why.
        button.disabled = false;
        report(`Could not sign out: ${/** @type {Error} */ (error).message}. Try again.`);
        return;
      }
      // 401: this session had already ended; the sign-in page is the right place anyway.
    }
    leave("/login");
  });
}
