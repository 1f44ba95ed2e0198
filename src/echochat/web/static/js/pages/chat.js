// @ts-check
/**
 * /chat: boots the buddy list. The realtime socket, the state and the window's parts live
 * in their own modules (net/socket.js, state/, ui/messenger.js); this only reads the page's
 * settings and starts them.
 *
 * `?idle=SECONDS` shortens the idle timeout (default 5 minutes), for tests and demos;
 * `?resync_delay=MS` fixes the wait before the replay of a "bus" resync (default a random
 * 0 .. 3 s, net/socket.js), for tests.
 */

import { resyncDelayFrom, Socket } from "../net/socket.js";
import { KeySession } from "../state/keysession.js";
import { idleTimeoutFrom } from "../state/presence.js";
import { setStatus } from "../ui/forms.js";
import { bindKeySetup } from "../ui/keysetup.js";
import { startMessenger } from "../ui/messenger.js";
import { startRooms } from "../ui/rooms.js";
import { bindSignOut } from "./signout.js";

const windowEl = document.getElementById("buddy-window");
const signOut = document.getElementById("sign-out");
const status = document.getElementById("buddy-notice");

if (signOut instanceof HTMLButtonElement) {
  bindSignOut(signOut, (message) => setStatus(status, message, "error"));
}

if (windowEl instanceof HTMLElement && windowEl.dataset.username) {
  const socket = new Socket({ resyncDelay: resyncDelayFrom(window.location.search) });
  // The E2EE keys: loaded from IndexedDB, or set up / restored through ui/keysetup.js's
  // dialogs; keys.changed events from the socket keep the buddies' keys fresh.
  const keys = new KeySession(windowEl.dataset.username);
  keys.attach(socket);
  bindKeySetup(keys);
  const me = windowEl.dataset.username;
  const messenger = startMessenger({
    socket,
    me,
    idleMs: idleTimeoutFrom(window.location.search),
    keys,
  });
  // Chat rooms and private groups, beside the buddy list (ui/rooms.js).
  startRooms({
    me,
    socket,
    store: messenger.store,
    sounds: messenger.pms.sounds,
    confirm: (question) => messenger.dialogs.confirm(question),
    openChat: (username) => messenger.pms.open(username),
    keys,
  });
  // Reviewers (staff only, whose pages load the moderation tools) follow the reports queue
  // through this window event, which imports nothing of this page (docs/security.md).
  const handOver = (/** @type {string} */ type, /** @type {any} */ data) =>
    window.dispatchEvent(new CustomEvent("echochat:reports", { detail: { type, data } }));
  socket.on("event", ({ type, data }) => {
    if (type === "report.new" || type === "report.resolved") {
      handOver(type, data);
    }
  });
  socket.on("ready", () => handOver("resync", {}));
  socket.on("resynced", () => handOver("resync", {}));
  socket.start();
  keys.start();
  // Leaving the page closes the socket cleanly; coming back from the back/forward cache
  // opens it again.
  window.addEventListener("pagehide", () => socket.stop());
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) {
      socket.start();
    }
  });
}
