// @ts-check
/**
 * Getting the user's attention for a message while they look elsewhere: the tab's title
 * flashes ("bob says…" / the page title) until the tab is seen again, and a desktop
 * notification appears when the tab is hidden and the user allowed them.
 *
 * Permission is asked only from a user gesture (the dock's "Desktop alerts" button), never
 * on load. A notification's text is set as plain text by the browser; clicking it brings
 * the tab forward and opens the conversation.
 */

const FLASH_MS = 1000;

export class Notifier {
  /**
   * @param {{onOpen: (peer: string) => void}} options
   */
  constructor({ onOpen }) {
    this.onOpen = onOpen;
    this.title = document.title;
    /** @type {number | undefined} */
    this.timer = undefined;
    this.flashText = "";
    this.count = 0;
    const stop = () => {
      if (seen()) {
        this.stopFlash();
      }
    };
    document.addEventListener("visibilitychange", stop);
    window.addEventListener("focus", stop);
  }

  /** Desktop notifications are possible here and not yet decided. */
  get canAsk() {
    return typeof Notification !== "undefined" && Notification.permission === "default";
  }

  get allowed() {
    return typeof Notification !== "undefined" && Notification.permission === "granted";
  }

  /** Ask for desktop notifications: call from a click. */
  async ask() {
    if (!this.canAsk) {
      return this.allowed;
    }
    try {
      return (await Notification.requestPermission()) === "granted";
    } catch {
      return false;
    }
  }

  /**
   * A message arrived: flash and notify if the user is not looking.
   * @param {string} peer
   * @param {string} name who sent it, for people
   * @param {string} text the message
   */
  message(peer, name, text) {
    if (seen()) {
      return;
    }
    this.count += 1;
    this.flash(`${name} says…`);
    if (document.hidden && this.allowed) {
      try {
        const shown = new Notification(`${name} — EchoChat`, {
          body: text.length > 140 ? `${text.slice(0, 139)}…` : text,
          tag: `echochat-pm-${peer}`,
          icon: "/static/img/echochat-logo.svg",
        });
        shown.addEventListener("click", () => {
          window.focus();
          this.onOpen(peer);
          shown.close();
        });
      } catch {
        // some browsers allow notifications only from a service worker: the title flashes
      }
    }
  }

  /**
   * @param {string} text
   */
  flash(text) {
    this.flashText = text;
    document.documentElement.dataset.titleFlash = text;
    if (this.timer !== undefined) {
      return;
    }
    let on = false;
    this.timer = window.setInterval(() => {
      on = !on;
      const prefix = this.count > 1 ? `(${this.count}) ` : "";
      document.title = on ? `${prefix}${this.flashText}` : this.title;
    }, FLASH_MS);
  }

  stopFlash() {
    window.clearInterval(this.timer);
    this.timer = undefined;
    this.count = 0;
    delete document.documentElement.dataset.titleFlash;
    document.title = this.title;
  }
}

/** The user is looking at this tab. */
function seen() {
  return document.visibilityState === "visible" && document.hasFocus();
}
