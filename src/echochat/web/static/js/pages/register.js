// @ts-check
/** /register: create an account, then open the buddy list. */

import { api } from "../net/api.js";
import { bindForm, passwordsMatch } from "../ui/forms.js";

const form = document.getElementById("register-form");

/** Refusals that name no field in their body, by code. */
const FIELD_OF_CODE = /** @type {Record<string, string>} */ ({
  username_taken: "username",
  email_taken: "email",
  email_required: "email",
});

if (form instanceof HTMLFormElement) {
  bindForm(
    form,
    async ({ username, display_name, email, password }) => {
      await api("POST", "/auth/register", {
        username: username.trim(),
        display_name: display_name.trim() || null,
        email: email.trim() || null,
        password,
      });
      window.location.assign("/chat");
      return true;
    },
    {
      check: passwordsMatch("password", "confirm"),
      explain(error) {
        const field = FIELD_OF_CODE[error.code];
        if (error.code === "username_taken") {
          return { field, message: "that username is taken; try another one" };
        }
        return field ? { field, message: error.message } : null;
      },
    },
  );
}
