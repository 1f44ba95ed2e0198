// @ts-check
/**
 * /chat: the signed-in shell. Until the realtime client arrives it checks the session
 * (refreshing the access token when it has expired) and wires the menu.
 */

import { ApiError, api } from "../net/api.js";
import { setStatus } from "../ui/forms.js";
import { signInAgain } from "../ui/navigate.js";
import { bindSignOut } from "./signout.js";

const status = document.getElementById("chat-status");
const signOut = document.getElementById("sign-out");

if (signOut instanceof HTMLButtonElement) {
  bindSignOut(signOut, (message) => setStatus(status, message, "error"));
}

try {
  await api("GET", "/me");
} catch (error) {
  if (error instanceof ApiError && error.status === 401) {
    signInAgain();
  } else {
    setStatus(
      status,
      `Could not reach the server: ${/** @type {Error} */ (error).message}`,
      "error",
    );
  }
}
