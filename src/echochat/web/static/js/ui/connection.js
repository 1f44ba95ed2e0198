// @ts-check
/** The status bar's connection line: connected, connecting, or lost and retrying in N s. */

import { byId } from "./dom.js";

/** @typedef {import("../net/socket.js").Socket} Socket */
/** @typedef {import("../net/socket.js").SocketStatus} SocketStatus */

/**
 * The status bar's connection line, and its "Retry now" button while waiting.
 * @param {Socket} socket
 * @param {HTMLElement} windowEl carries data-connection
 */
export function bindConnection(socket, windowEl) {
  const text = byId("connection-text", HTMLElement);
  const retry = byId("reconnect", HTMLButtonElement);
  /** @type {number | undefined} */
  let ticker;
  retry.addEventListener("click", () => socket.reconnectNow());
  socket.on("status", (/** @type {SocketStatus} */ status) => {
    window.clearInterval(ticker);
    windowEl.dataset.connection = status.state;
    retry.hidden = status.state !== "waiting";
    if (status.state === "waiting" && status.retryAt) {
      const retryAt = status.retryAt;
      const tick = () => {
        const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
        text.textContent =
          seconds > 0 ? `Connection lost. Retrying in ${seconds} s…` : "Connection lost. Retrying…";
      };
      tick();
      ticker = window.setInterval(tick, 1000);
    } else {
      text.textContent = {
        connecting: "Connecting…",
        online: "Connected",
        stopped: "Disconnected",
        waiting: "Connection lost",
      }[status.state];
    }
  });
}
