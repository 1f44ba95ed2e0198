// @ts-check
/**
 * The admin panel's window: floating like a PM window (ui/pmwindow.js), dragged by its
 * title bar, resizable by its corner, minimized into the dock at the bottom of the page
 * (its own button there, next to the conversations) and closed. It lives in the PM
 * windows' layer so that whichever window was used last is on top. On a narrow screen it
 * fills the width above the dock and does not move.
 *
 * Position and size go in through the CSSOM (style.left...), which the
 * Content-Security-Policy allows; they are remembered in localStorage.
 */

import { el } from "/static/js/ui/dom.js";

const NARROW = "(max-width: 36rem)";
const STORAGE_KEY = "echochat.admin.frame";

/** @param {number} open */
export function reportsText(open) {
  return `${open} open report${open === 1 ? "" : "s"}`;
}

export class AdminFrame {
  /**
   * @param {HTMLElement} root the panel (templates: _admin_panel.html)
   * @param {{onOpen: () => void}} handlers
   */
  constructor(root, { onOpen }) {
    this.root = root;
    this.onOpen = onOpen;
    this.titlebar = /** @type {HTMLElement} */ (root.querySelector(".admin-panel__titlebar"));
    this.minimized = false;
    // Share the PM windows' stacking context, so raising works both ways.
    const layer = document.getElementById("pm-layer");
    layer?.append(root);
    layer?.addEventListener("pointerdown", (event) => {
      const pm = /** @type {Element} */ (event.target).closest(".pm");
      if (pm instanceof HTMLElement) {
        this.lowerBelow(pm);
      }
    });
    this.dockButton = el(
      "button",
      {
        className: "dock__item admin-dock",
        attrs: { type: "button", id: "admin-dock", title: "Admin panel", hidden: true },
      },
      [
        el("span", { className: "admin-dock__icon", attrs: { "aria-hidden": "true" } }),
        el("span", { className: "dock__name", text: "Admin panel" }),
      ],
    );
    // Reviewers: how many reports are open (panel.js keeps it current, setReports).
    this.reports = 0;
    this.reportsBadge = el("span", {
      className: "dock__badge admin-dock__badge",
      attrs: { "aria-hidden": "true", hidden: true },
    });
    this.dockButton.append(this.reportsBadge);
    const dock = document.getElementById("dock");
    dock?.insertBefore(this.dockButton, document.getElementById("dock-alerts"));
    this.dockButton.addEventListener("click", () => {
      if (this.minimized || !this.isActive()) {
        this.open();
      } else {
        this.minimize();
      }
    });
    root.querySelector(".admin-panel__min")?.addEventListener("click", () => this.minimize());
    root.querySelector(".admin-panel__close")?.addEventListener("click", () => this.close());
    root.addEventListener("pointerdown", () => this.raise());
    root.addEventListener("focusin", () => this.raise());
    root.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !event.defaultPrevented && event.target === root) {
        this.minimize();
      }
    });
    this.bindDrag();
    new ResizeObserver(() => {
      if (!root.hidden) {
        this.save();
      }
    }).observe(root);
  }

  get isOpen() {
    return !this.root.hidden;
  }

  isActive() {
    return this.root.classList.contains("admin-panel--active");
  }

  open() {
    const first = this.root.hidden && !this.minimized;
    this.root.hidden = false;
    this.minimized = false;
    if (first) {
      this.place();
    }
    this.raise();
    this.showDock();
    this.root.focus({ preventScroll: true });
    this.onOpen();
  }

  minimize() {
    this.root.hidden = true;
    this.minimized = true;
    this.root.classList.remove("admin-panel--active");
    this.showDock();
    this.dockButton.focus();
  }

  close() {
    this.root.hidden = true;
    this.minimized = false;
    this.root.classList.remove("admin-panel--active");
    this.showDock();
  }

  showDock() {
    const shown = this.isOpen || this.minimized;
    this.dockButton.hidden = !shown;
    this.dockButton.classList.toggle("dock__item--min", this.minimized);
    this.dockButton.classList.toggle("dock__item--active", this.isOpen);
    this.dockButton.setAttribute("aria-pressed", String(this.isOpen));
    const reports = this.reports > 0 ? `, ${reportsText(this.reports)}` : "";
    const label = `${this.minimized ? "Admin panel (minimized)" : "Admin panel"}${reports}`;
    this.dockButton.setAttribute("aria-label", label);
    this.dockButton.title = `Admin panel${reports}`;
    const empty = document.getElementById("dock-empty");
    const items = document.getElementById("dock-items");
    if (empty && items) {
      // "No open conversations" stays true; only its hint makes no sense beside the button.
      empty.classList.toggle("admin-dock--beside", shown);
    }
  }

  /**
   * The open reports on the dock button: a badge (none at 0) and its label; `fresh` (a new
   * report the moderator has not seen yet) blinks the button as an unread PM's does.
   * @param {number} open
   * @param {boolean} fresh
   */
  setReports(open, fresh) {
    this.reports = open;
    this.reportsBadge.hidden = open <= 0;
    this.reportsBadge.textContent = String(open);
    if (fresh) {
      this.dockButton.classList.remove("dock__item--unread");
      void this.dockButton.offsetWidth; // restart the blink
      this.dockButton.classList.add("dock__item--unread");
    }
    this.showDock();
  }

  /** On top of the PM windows, which ui/pms.js stacks with growing z-indexes. */
  raise() {
    let top = 30;
    for (const node of document.querySelectorAll(".pm")) {
      top = Math.max(top, Number.parseInt(/** @type {HTMLElement} */ (node).style.zIndex, 10) || 0);
    }
    const mine = Number.parseInt(this.root.style.zIndex, 10) || 0;
    if (mine <= top) {
      this.root.style.zIndex = String(top + 1);
    }
    this.root.classList.add("admin-panel--active");
  }

  /**
   * A PM window was used (ui/pms.js raised it, or it was on top of the PMs already): it
   * goes above the panel.
   * @param {HTMLElement} pm
   */
  lowerBelow(pm) {
    this.root.classList.remove("admin-panel--active");
    const theirs = Number.parseInt(pm.style.zIndex, 10) || 30;
    const mine = Number.parseInt(this.root.style.zIndex, 10) || 0;
    if (mine >= theirs) {
      this.root.style.zIndex = String(theirs - 1);
    }
  }

  /** Where it was last time, or centred on the page. */
  place() {
    /** @type {any} */
    let saved = null;
    try {
      saved = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "null");
    } catch {
      saved = null;
    }
    if (saved && ["x", "y", "w", "h"].every((k) => Number.isFinite(saved[k]))) {
      this.root.style.width = `${Math.min(saved.w, window.innerWidth - 8)}px`;
      this.root.style.height = `${Math.min(saved.h, window.innerHeight - 56)}px`;
      this.moveTo(saved.x, saved.y);
      return;
    }
    const w = this.root.offsetWidth || 760;
    const h = this.root.offsetHeight || 560;
    this.moveTo((window.innerWidth - w) / 2, Math.max(8, (window.innerHeight - h) / 2 - 24));
  }

  /**
   * Put the window at (x, y), its title bar kept reachable.
   * @param {number} x
   * @param {number} y
   */
  moveTo(x, y) {
    const width = this.root.offsetWidth || 760;
    const maxX = Math.max(0, window.innerWidth - Math.min(width, 120));
    const maxY = Math.max(0, window.innerHeight - 80);
    this.root.style.left = `${Math.round(Math.min(Math.max(x, -width + 120), maxX))}px`;
    this.root.style.top = `${Math.round(Math.min(Math.max(y, 0), maxY))}px`;
  }

  save() {
    if (window.matchMedia(NARROW).matches) {
      return;
    }
    const box = {
      x: Number.parseInt(this.root.style.left, 10) || 0,
      y: Number.parseInt(this.root.style.top, 10) || 0,
      w: this.root.offsetWidth,
      h: this.root.offsetHeight,
    };
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(box));
    } catch {
      // storage off: the panel opens centred next time
    }
  }

  bindDrag() {
    /** @type {{dx: number, dy: number, id: number} | null} */
    let drag = null;
    const bar = this.titlebar;
    bar.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || /** @type {Element} */ (event.target).closest("button")) {
        return;
      }
      if (window.matchMedia(NARROW).matches) {
        return;
      }
      const box = this.root.getBoundingClientRect();
      drag = { dx: event.clientX - box.left, dy: event.clientY - box.top, id: event.pointerId };
      bar.setPointerCapture(event.pointerId);
      this.root.classList.add("admin-panel--dragging");
      event.preventDefault();
    });
    bar.addEventListener("pointermove", (event) => {
      if (drag && event.pointerId === drag.id) {
        this.moveTo(event.clientX - drag.dx, event.clientY - drag.dy);
      }
    });
    const end = (/** @type {PointerEvent} */ event) => {
      if (drag && event.pointerId === drag.id) {
        drag = null;
        this.root.classList.remove("admin-panel--dragging");
        this.save();
      }
    };
    bar.addEventListener("pointerup", end);
    bar.addEventListener("pointercancel", end);
  }
}
