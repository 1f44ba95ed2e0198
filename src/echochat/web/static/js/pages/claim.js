// @ts-check
/**
 * /claim#TOKEN: create the first admin with the one-time link printed by `echochat serve`.
 * The token sits in the URL fragment, which browsers never send to a server; it is only
 * sent in the body of the claim request, and removed from the address bar after success.
 */

import { api } from "../net/api.js";
import { bindForm, passwordsMatch } from "../ui/forms.js";

const token = window.location.hash.slice(1);
const form = document.getElementById("claim-form");
const missing = document.getElementById("claim-missing");
const invalid = document.getElementById("claim-invalid");

if (
  form instanceof HTMLFormElement &&
  missing instanceof HTMLElement &&
  invalid instanceof HTMLElement
) {
  if (!token) {
    form.hidden = true;
    missing.hidden = false;
  }
  bindForm(
    form,
    async ({ username, display_name, email, password }) => {
      try {
        await api("POST", "/auth/claim", {
          token,
          username: username.trim(),
          display_name: display_name.trim() || null,
          email: email.trim() || null,
          password,
        });
      } catch (error) {
        if (/** @type {{code?: string}} */ (error).code !== "claim_invalid") {
          throw error;
        }
        form.hidden = true;
        invalid.hidden = false;
        invalid.focus();
        return false;
      }
      window.history.replaceState(null, "", window.location.pathname);
      window.location.replace("/chat");
      return true;
    },
    {
      check: passwordsMatch("password", "confirm"),
      explain(error) {
        if (error.code === "admin_exists") {
          return {
            message: "an admin already exists on this server",
            action: { href: "/login", text: "Sign in" },
          };
        }
        if (error.code === "username_taken") {
          return { field: "username", message: error.message };
        }
        if (error.code === "email_taken") {
          return { field: "email", message: error.message };
        }
        return null;
      },
    },
  );
}
