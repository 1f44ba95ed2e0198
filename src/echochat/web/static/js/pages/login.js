// @ts-check
/** The sign-in form of the landing page (/ and /login). */

import { api } from "../net/api.js";
import { bindForm, setStatus, waitInWords } from "../ui/forms.js";
import { afterSignIn } from "../ui/navigate.js";

/** Set by the chat page when the server ended its session (ui/messenger.js NOTICE_KEY). */
const NOTICE_KEY = "echochat.notice";

const form = document.getElementById("login-form");

/** Why the last session ended, if the chat page left a note (shown once). */
function showNotice() {
  let notice = null;
  try {
    notice = sessionStorage.getItem(NOTICE_KEY);
    sessionStorage.removeItem(NOTICE_KEY);
  } catch {
    return;
  }
  if (notice) {
    setStatus(document.getElementById("login-status"), notice, "info");
  }
}

showNotice();

if (form instanceof HTMLFormElement) {
  bindForm(
    form,
    async ({ username, password }) => {
      await api("POST", "/auth/login", { username, password });
      window.location.assign(afterSignIn());
      return true;
    },
    {
      explain(error) {
        if (error.code === "bad_credentials") {
          return { message: "wrong username or password", focus: "password" };
        }
        if (error.status === 429 && error.retryAfter) {
          return {
            message: `too many sign-in attempts; try again in ${waitInWords(error.retryAfter)}`,
          };
        }
        return null; // "this account is banned: <reason>" and the rest, as the server says
      },
    },
  );
}
