// @ts-check
/**
 * The PM windows together: opening (from the buddy list, a menu, an incoming message or a
 * notification), the dock at the bottom of the page (one button per open conversation, with
 * its unread badge; a minimized window waits there), stacking (the window in use is on top
 * and is the "active" one), what is remembered across reloads (which windows, where, how
 * big, minimized or not: localStorage, per user), and the wiring of each window to the
 * conversations (state/conversations.js), the key session, sounds and notifications.
 *
 * Read receipts: a conversation counts as read when its window is open (not minimized),
 * active, and the tab is visible and focused.
 */

import { messageOf } from "../state/conversations.js";
import { byId, el } from "./dom.js";
import { Notifier } from "./notify.js";
import { PmWindow } from "./pmwindow.js";

/** @typedef {import("../state/conversations.js").Conversations} Conversations */
/** @typedef {import("../state/conversations.js").Keys} Keys */
/** @typedef {import("./sounds.js").Sounds} Sounds */
/** @typedef {{name: string, state: string, status: string}} BuddyInfo */
/** @typedef {{peer: string, x: number, y: number, w: number, h: number, min: boolean}} Saved */

const NARROW = "(max-width: 36rem)";
const CASCADE_PX = 28;
const DEFAULT_W = 380;
const DEFAULT_H = 440;
const MESSAGE_SOUND_GAP_MS = 800;

export class PmManager {
  /**
   * @param {{me: string, conversations: Conversations, keys: Keys | null, sounds: Sounds,
   *   buddy: (peer: string) => BuddyInfo}} options
   */
  constructor({ me, conversations, keys, sounds, buddy }) {
    this.me = me;
    this.conversations = conversations;
    this.keys = keys;
    this.sounds = sounds;
    this.buddy = buddy;
    this.template = byId("pm-template", HTMLTemplateElement);
    this.layer = byId("pm-layer", HTMLElement);
    this.dock = byId("dock", HTMLElement);
    this.dockItems = byId("dock-items", HTMLElement);
    this.dockEmpty = byId("dock-empty", HTMLElement);
    this.alertsButton = byId("dock-alerts", HTMLButtonElement);
    /** @type {Map<string, PmWindow>} */
    this.windows = new Map();
    /** @type {Set<string>} */
    this.minimized = new Set();
    /** @type {string | null} */
    this.active = null;
    this.z = 30;
    this.storageKey = `echochat.pms.${me}`;
    this.lastSound = 0;
    this.restoring = false;
    this.notifier = new Notifier({ onOpen: (peer) => this.open(peer) });
    this.bindAlerts();
    this.wire();
    this.restore();
  }

  bindAlerts() {
    const show = () => {
      this.alertsButton.hidden = !this.notifier.canAsk;
    };
    this.alertsButton.addEventListener("click", async () => {
      await this.notifier.ask();
      show();
    });
    show();
  }

  wire() {
    const c = this.conversations;
    c.on("change", ({ peer }) => this.renderWindow(peer));
    c.on("counts", () => this.renderDock());
    c.on("typing", ({ peer, active }) => {
      this.windows.get(peer)?.setTyping(active, this.buddy(peer).name);
    });
    c.on("notice", ({ peer, text, tone }) => this.note(peer, text, tone));
    c.on("incoming", ({ peer, entry }) =>
      this.incoming(
        peer,
        entry.state === "open"
          ? entry.text
          : entry.state === "locked"
            ? "A new encrypted message: unlock your keys to read it."
            : "A message that could not be verified.",
      ),
    );
    c.on("buzz", ({ peer }) => this.buzzed(peer));
    this.keys?.on("state", () => this.showLocks());
    this.keys?.on("trust", (data) => this.trust(data));
    const seen = () => {
      if (this.active) {
        this.readIfSeen(this.active);
      }
    };
    document.addEventListener("visibilitychange", seen);
    window.addEventListener("focus", seen);
    window.addEventListener("resize", () => {
      for (const pm of this.windows.values()) {
        const { x, y } = pm.geometry();
        pm.moveTo(x, y);
      }
    });
  }

  // --- opening, closing, minimizing ---------------------------------------------------------

  /**
   * Open (or bring forward) the window of `peer`.
   * @param {string} peer
   * @param {{activate?: boolean, minimized?: boolean, geometry?: Saved}} [options]
   */
  open(peer, { activate = true, minimized = false, geometry } = {}) {
    let pm = this.windows.get(peer);
    if (!pm) {
      pm = this.create(peer, geometry);
      if (minimized) {
        this.minimized.add(peer);
        pm.root.hidden = true;
      }
      this.layer.append(pm.root);
      this.renderWindow(peer);
      pm.scrollToBottom();
      const conv = this.conversations.get(peer);
      if (!conv.history) {
        this.conversations.loadNewest(peer).then(() => this.readIfSeen(peer));
      }
    }
    if (!minimized || activate) {
      this.restoreWindow(peer, activate);
    }
    this.renderDock();
    this.save();
    return pm;
  }

  /**
   * @param {string} peer
   * @param {Saved} [geometry]
   */
  create(peer, geometry) {
    const conversations = this.conversations;
    const pm = new PmWindow({
      peer,
      me: this.me,
      myName: document.getElementById("viewer-name")?.textContent?.trim() || this.me,
      template: this.template,
      handlers: {
        onSend: (text) => {
          conversations.send(peer, text);
        },
        onBuzz: () => this.sendBuzz(peer),
        onTyping: (active) => conversations.typing(peer, active),
        onMinimize: () => this.minimize(peer),
        onClose: () => this.close(peer),
        onActivate: () => this.activate(peer),
        onOlder: () => {
          conversations.loadOlder(peer);
        },
        onRetry: (clientId) => conversations.retry(peer, clientId),
        onUnlock: () => this.keys?.promptUnlock(),
        onSafety: () => this.safety(peer),
        onGeometry: () => this.save(),
      },
    });
    const info = this.buddy(peer);
    pm.setBuddy(info.name, info.state, info.status);
    this.windows.set(peer, pm);
    if (geometry) {
      pm.resizeTo(geometry.w, geometry.h);
      pm.moveTo(geometry.x, geometry.y);
    } else {
      const n = this.windows.size - 1;
      const x = Math.max(
        8,
        Math.min(window.innerWidth - DEFAULT_W - 24, 32 + (n % 8) * CASCADE_PX),
      );
      const y = 96 + (n % 8) * CASCADE_PX;
      pm.resizeTo(
        Math.min(DEFAULT_W, window.innerWidth - 16),
        Math.min(DEFAULT_H, window.innerHeight - y - 56),
      );
      pm.moveTo(x, y);
    }
    this.showLock(pm);
    return pm;
  }

  /**
   * Show a minimized window again (or bring an open one forward).
   * @param {string} peer
   * @param {boolean} [activate]
   */
  restoreWindow(peer, activate = true) {
    const pm = this.windows.get(peer);
    if (!pm) {
      return;
    }
    const was = this.minimized.delete(peer);
    pm.root.hidden = false;
    if (was) {
      pm.scrollToBottom();
    }
    if (activate) {
      this.activate(peer);
      if (!pm.root.contains(document.activeElement)) {
        (pm.input.disabled ? pm.root : pm.input).focus({ preventScroll: true });
      }
    } else {
      this.raise(pm);
    }
    this.renderDock();
    this.save();
  }

  /** @param {string} peer */
  minimize(peer) {
    const pm = this.windows.get(peer);
    if (!pm) {
      return;
    }
    this.minimized.add(peer);
    pm.root.hidden = true;
    pm.stopTyping();
    if (this.active === peer) {
      this.active = null;
    }
    this.renderDock();
    this.save();
    this.dockItem(peer)?.focus();
  }

  /** @param {string} peer */
  close(peer) {
    const pm = this.windows.get(peer);
    if (!pm) {
      return;
    }
    pm.stopTyping();
    pm.root.remove();
    this.windows.delete(peer);
    this.minimized.delete(peer);
    if (this.active === peer) {
      this.active = null;
    }
    this.renderDock();
    this.save();
  }

  /** @param {PmWindow} pm */
  raise(pm) {
    this.z += 1;
    pm.root.style.zIndex = String(this.z);
  }

  /**
   * The user is in this window: on top, active, and read if they can see it.
   * @param {string} peer
   */
  activate(peer) {
    const pm = this.windows.get(peer);
    if (!pm || this.minimized.has(peer)) {
      return;
    }
    if (this.active !== peer) {
      this.active = peer;
      for (const [other, w] of this.windows) {
        w.root.classList.toggle("pm--active", other === peer);
      }
      this.raise(pm);
      this.renderDock();
    }
    this.readIfSeen(peer);
  }

  /** @param {string} peer */
  readIfSeen(peer) {
    if (
      this.active === peer &&
      this.windows.has(peer) &&
      !this.minimized.has(peer) &&
      document.visibilityState === "visible" &&
      document.hasFocus()
    ) {
      this.conversations.markRead(peer);
      this.notifier.stopFlash();
    }
  }

  // --- what happens in a conversation --------------------------------------------------------

  /** @param {string} peer */
  renderWindow(peer) {
    const pm = this.windows.get(peer);
    if (pm) {
      pm.render(this.conversations.get(peer));
      this.readIfSeen(peer);
    }
  }

  /**
   * A peer's new message was opened here.
   * @param {string} peer
   * @param {string} text
   */
  incoming(peer, text) {
    if (!this.windows.has(peer)) {
      // As Yahoo did: the conversation pops up (into the dock on a small screen), without
      // taking the keyboard away from what the user is doing.
      this.open(peer, { activate: false, minimized: window.matchMedia(NARROW).matches });
    }
    const now = Date.now();
    const looking =
      this.active === peer && document.visibilityState === "visible" && document.hasFocus();
    if (!looking && now - this.lastSound > MESSAGE_SOUND_GAP_MS) {
      this.lastSound = now;
      this.sounds.play("message", peer);
    }
    this.notifier.message(peer, this.buddy(peer).name, text);
    this.renderDock();
  }

  /** @param {string} peer */
  buzzed(peer) {
    const name = this.buddy(peer).name;
    const pm = this.windows.get(peer) ?? this.open(peer, { activate: false });
    if (this.minimized.has(peer)) {
      this.restoreWindow(peer, false);
    }
    this.note(peer, `${name}: BUZZ!!!`, "buzz");
    pm.shake();
    this.sounds.play("buzz", peer);
    this.notifier.message(peer, name, "BUZZ!!!");
  }

  /** @param {string} peer */
  async sendBuzz(peer) {
    const name = this.buddy(peer).name;
    try {
      await this.conversations.buzz(peer);
      this.note(peer, `You sent ${name} a BUZZ!!!`, "buzz");
    } catch (error) {
      const code = /** @type {any} */ (error)?.code;
      const text =
        code === "rate_limited"
          ? `You buzzed ${name} a moment ago. Give them a few seconds before the next BUZZ!`
          : code === "not_connected" || code === "disconnected" || code === "timeout"
            ? "The BUZZ! did not go out: you are not connected right now."
            : code === "user_not_found" || code === "blocked"
              ? `${name} cannot be buzzed.`
              : `The BUZZ! did not go out: ${messageOf(error)}`;
      this.note(peer, text, code === "rate_limited" ? "info" : "error");
    }
  }

  /**
   * A line in a conversation's window (opening it if needed).
   * @param {string} peer
   * @param {string} text
   * @param {"info" | "buzz" | "warning" | "error"} [tone]
   * @param {{label: string, run: () => void} | null} [action]
   */
  note(peer, text, tone = "info", action = null) {
    const pm = this.windows.get(peer) ?? this.open(peer, { activate: false, minimized: true });
    pm.note(text, tone, action, this.conversations.get(peer));
    this.renderWindow(peer);
  }

  /** @param {{peer: string, kind: string, device_id?: string, verified?: boolean}} data */
  trust(data) {
    const peer = data.peer;
    if (typeof peer !== "string" || peer === this.me) {
      return;
    }
    const name = this.buddy(peer).name;
    const safety = { label: "Safety number", run: () => this.safety(peer) };
    if (data.kind === "identity_changed") {
      this.note(
        peer,
        `Warning: ${name}'s security keys changed. This happens when they start fresh or ` +
          "reinstall; it could also be someone else. Compare safety numbers before you " +
          "trust the new keys.",
        "warning",
        safety,
      );
    } else if (data.kind === "device_added") {
      if (this.windows.has(peer)) {
        this.note(peer, `${name} added a device.`, "info", safety);
      }
    } else if (data.kind === "device_removed") {
      if (this.windows.has(peer)) {
        this.note(peer, `${name} removed a device.`);
      }
    } else if (data.kind === "identity_accepted") {
      this.note(peer, `You accepted ${name}'s new keys.`);
    } else if (data.kind === "verified" && this.windows.has(peer)) {
      this.note(
        peer,
        data.verified
          ? `You marked ${name} as verified.`
          : `${name} is no longer marked as verified.`,
      );
    }
  }

  /** @param {string} peer */
  async safety(peer) {
    if (!this.keys) {
      return;
    }
    try {
      const { showSafetyNumber } = await import("./safety.js");
      showSafetyNumber(/** @type {any} */ (this.keys), peer);
    } catch (error) {
      this.note(peer, `The safety number cannot be shown: ${messageOf(error)}`, "error");
    }
  }

  showLocks() {
    for (const pm of this.windows.values()) {
      this.showLock(pm);
    }
  }

  /** @param {PmWindow} pm */
  showLock(pm) {
    const keys = this.keys;
    if (!keys) {
      pm.setLocked(
        true,
        "Encryption is not available on this page, so messages cannot be read or sent.",
        false,
      );
    } else if (!keys.unlocked) {
      const phase = /** @type {any} */ (keys).phase;
      pm.setLocked(
        true,
        phase === "starting"
          ? "Loading your encryption keys…"
          : "Your encryption keys are locked in this browser. Unlock them to read and send " +
            "messages.",
        phase !== "starting",
      );
    } else {
      pm.setLocked(false, "", false);
    }
  }

  /**
   * Names and presence from the buddy list.
   */
  updateBuddies() {
    for (const [peer, pm] of this.windows) {
      const info = this.buddy(peer);
      pm.setBuddy(info.name, info.state, info.status);
    }
    this.renderDock();
  }

  // --- the dock --------------------------------------------------------------------------------

  renderDock() {
    const counts = this.conversations.counts();
    const items = [...this.windows.keys()].map((peer) => {
      const info = this.buddy(peer);
      const unread = counts[peer]?.unread ?? 0;
      const minimized = this.minimized.has(peer);
      const active = !minimized && this.active === peer;
      const label =
        info.name + (minimized ? " (minimized)" : "") + (unread ? `, ${unread} unread` : "");
      const button = el(
        "button",
        {
          className: [
            "dock__item",
            minimized ? "dock__item--min" : "",
            active ? "dock__item--active" : "",
            unread ? "dock__item--unread" : "",
          ].join(" "),
          attrs: {
            type: "button",
            "aria-label": label,
            title: label,
            "aria-pressed": String(active),
          },
        },
        [
          el("span", {
            className: `presence-dot presence-dot--${info.state}`,
            attrs: { "aria-hidden": "true" },
          }),
          el("span", { className: "dock__name", text: info.name }),
        ],
      );
      button.dataset.peer = peer;
      if (unread) {
        const badge = el("span", { className: "dock__badge", text: String(unread) });
        badge.dataset.unread = String(unread);
        button.append(badge);
      }
      button.addEventListener("click", () => {
        if (minimized) {
          this.restoreWindow(peer);
        } else if (this.active === peer) {
          this.minimize(peer);
        } else {
          this.restoreWindow(peer);
        }
      });
      return button;
    });
    const focused = document.activeElement;
    const focusedPeer =
      focused instanceof HTMLElement && this.dockItems.contains(focused)
        ? focused.dataset.peer
        : undefined;
    this.dockItems.replaceChildren(...items);
    if (focusedPeer) {
      this.dockItem(focusedPeer)?.focus();
    }
    this.dockEmpty.hidden = items.length > 0;
    this.dock.dataset.count = String(items.length);
  }

  /**
   * @param {string} peer
   * @returns {HTMLElement | null}
   */
  dockItem(peer) {
    return this.dockItems.querySelector(`[data-peer="${CSS.escape(peer)}"]`);
  }

  // --- remembered across reloads ---------------------------------------------------------------

  save() {
    if (this.restoring) {
      return;
    }
    /** @type {Saved[]} */
    const open = [...this.windows].map(([peer, pm]) => ({
      peer,
      ...pm.geometry(),
      min: this.minimized.has(peer),
    }));
    try {
      localStorage.setItem(this.storageKey, JSON.stringify({ v: 1, open, active: this.active }));
    } catch {
      // storage disabled: windows are not remembered
    }
  }

  restore() {
    /** @type {any} */
    let saved = null;
    try {
      saved = JSON.parse(localStorage.getItem(this.storageKey) ?? "null");
    } catch {
      saved = null;
    }
    if (!saved || saved.v !== 1 || !Array.isArray(saved.open)) {
      this.renderDock();
      return;
    }
    this.restoring = true;
    try {
      for (const item of saved.open) {
        if (!item || typeof item.peer !== "string" || !/^[a-z0-9_.-]{3,32}$/u.test(item.peer)) {
          continue;
        }
        const geometry = ["x", "y", "w", "h"].every((k) => Number.isFinite(item[k]))
          ? /** @type {Saved} */ (item)
          : undefined;
        this.open(item.peer, { activate: false, minimized: Boolean(item.min), geometry });
      }
    } finally {
      this.restoring = false;
    }
    if (typeof saved.active === "string" && this.windows.has(saved.active)) {
      this.activate(saved.active);
    }
    this.renderDock();
  }
}
