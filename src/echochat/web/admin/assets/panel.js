// @ts-check
/**
 * The admin panel, loaded only for users holding admin:basic (api/admin_assets.py serves
 * it; chat.html includes it and the markup, templates: _admin_panel.html, only for them).
 *
 * It adds "Admin panel…" to the Messenger menu (ui/menubar.js extendMenu) and drives the
 * floating window (frame.js) and its tabs (tabs/*.js), following the WAI-ARIA tabs pattern:
 * one Tab stop, Left/Right/Home/End move between tabs. A tab loads its data when it is
 * shown, and again each time it is chosen. The markup holds only the tabs this user may
 * use; the permissions in `data-permissions` are checked again here (state.js).
 */

import { askConfirm as confirm } from "/static/js/ui/dialogs.js";
import { extendMenu } from "/static/js/ui/menubar.js";
import { el } from "/static/js/ui/dom.js";
import { AdminFrame, reportsText } from "./frame.js";
import * as net from "./net.js";
import { openCount, TABS, visibleTabs } from "./state.js";
import { AuditTab } from "./tabs/audit.js";
import { DashboardTab } from "./tabs/dashboard.js";
import { ReportsTab } from "./tabs/reports.js";
import { RoomsTab } from "./tabs/rooms.js";
import { SettingsTab } from "./tabs/settings.js";
import { UsersTab } from "./tabs/users.js";

const TAB_KEY = "echochat.admin.tab";

/**
 * @param {string} name
 * @param {(name: string) => void} show switch to another tab
 * @returns {{load: () => Promise<void>} | null}
 */
function makeTab(name, show) {
  switch (name) {
    case "dashboard":
      return new DashboardTab({ showTab: show });
    case "users":
      return new UsersTab({ confirm });
    case "settings":
      return new SettingsTab();
    case "rooms":
      return new RoomsTab({ confirm });
    case "reports":
      return new ReportsTab();
    case "audit":
      return new AuditTab();
    default:
      return null;
  }
}

// The chat page hands its socket's report events over with this window event (pages/chat.js):
// detail {type: "report.new" | "report.resolved", data: {id, open, ...}} or {type: "resync"}
// after a (re)connection or a resync, when some may have been missed.
const REPORTS_EVENT = "echochat:reports";

/**
 * Reviewers: the open reports' count on the Reports tab and the dock button, live. It is
 * read once at start and after each (re)connection, then taken from the events; the list
 * reloads itself when the Reports tab is showing.
 * @param {AdminFrame} frame
 * @param {HTMLButtonElement} button the Reports tab
 * @param {ReportsTab} tab
 * @param {() => boolean} showing whether the Reports tab is on screen
 */
function followReports(frame, button, tab, showing) {
  const badge = el("span", {
    className: "admin-tab__badge",
    attrs: { id: "admin-reports-badge", hidden: true },
  });
  button.append(badge);
  const state = { open: 0, seen: () => {} };
  /**
   * @param {number} open
   * @param {boolean} fresh a report arrived that the moderator has not seen
   */
  const show = (open, fresh) => {
    state.open = open;
    badge.hidden = open <= 0;
    badge.textContent = String(open);
    button.title = open > 0 ? reportsText(open) : "";
    if (fresh) {
      badge.classList.add("admin-tab__badge--new");
    } else if (open <= 0) {
      state.seen();
    }
    frame.setReports(open, fresh);
    const card = document.getElementById("admin-open-reports");
    if (card) {
      card.textContent = badge.textContent;
      card.dataset.count = String(open);
    }
  };
  state.seen = () => {
    badge.classList.remove("admin-tab__badge--new");
  };
  let counting = false;
  const recount = async () => {
    if (counting) {
      return;
    }
    counting = true;
    try {
      const open = openCount(await net.reports("open", 1));
      if (open !== null) {
        show(open, false);
      }
    } catch {
      // offline or refused: the next event or reconnection corrects it
    } finally {
      counting = false;
    }
  };
  window.addEventListener(REPORTS_EVENT, (event) => {
    const { type, data } = /** @type {CustomEvent<{type: string, data?: any}>} */ (event).detail ?? {};
    if (type === "resync") {
      recount();
      return;
    }
    if ((type !== "report.new" && type !== "report.resolved") || !Number.isInteger(data?.open)) {
      return;
    }
    const onScreen = showing();
    show(data.open, type === "report.new" && !onScreen);
    if (onScreen) {
      tab.refreshLive();
    }
  });
  recount();
  return state;
}

function start() {
  const root = document.getElementById("admin-panel");
  if (!(root instanceof HTMLElement)) {
    return;
  }
  const allowed = new Set(visibleTabs((root.dataset.permissions ?? "").split(/\s+/u)));
  const buttons = /** @type {HTMLButtonElement[]} */ ([
    ...root.querySelectorAll(".admin-tab[data-tab]"),
  ]).filter((button) => {
    const ok = allowed.has(/** @type {any} */ (button.dataset.tab));
    if (!ok) {
      button.remove();
      document.getElementById(`admin-pane-${button.dataset.tab}`)?.remove();
    }
    return ok;
  });
  /** @type {Map<string, {load: () => Promise<void>}>} */
  const tabs = new Map();
  /** @type {(name: string) => void} set once `select` exists */
  let show = () => {};
  for (const button of buttons) {
    const name = button.dataset.tab ?? "";
    const tab = makeTab(name, (other) => show(other));
    if (tab) {
      tabs.set(name, tab);
    }
  }
  let saved = "";
  try {
    saved = sessionStorage.getItem(TAB_KEY) ?? "";
  } catch {
    saved = "";
  }
  /** @type {{open: number, seen: () => void} | null} the open reports (reviewers only) */
  let queue = null;
  let current = tabs.has(saved) ? saved : (buttons[0]?.dataset.tab ?? "");

  /**
   * @param {string} name
   * @param {boolean} [focus]
   */
  const select = (name, focus = false) => {
    current = name;
    try {
      sessionStorage.setItem(TAB_KEY, name);
    } catch {
      // storage off: the panel opens on its first tab next time
    }
    for (const button of buttons) {
      const chosen = button.dataset.tab === name;
      button.setAttribute("aria-selected", String(chosen));
      button.tabIndex = chosen ? 0 : -1;
      if (chosen && focus) {
        button.focus();
      }
      if (chosen) {
        // On a narrow panel the tab row scrolls: keep the chosen tab in view.
        button.scrollIntoView({ block: "nearest", inline: "nearest" });
      }
      const pane = document.getElementById(`admin-pane-${button.dataset.tab}`);
      if (pane) {
        pane.hidden = !chosen;
      }
    }
    root.dataset.tab = name;
    if (name === "reports") {
      queue?.seen();
    }
    tabs.get(name)?.load();
  };

  show = (name) => {
    if (tabs.has(name)) {
      select(name, true);
    }
  };

  for (const [index, button] of buttons.entries()) {
    button.addEventListener("click", () => select(button.dataset.tab ?? ""));
    button.addEventListener("keydown", (event) => {
      const to = {
        ArrowRight: index + 1,
        ArrowLeft: index - 1,
        Home: 0,
        End: buttons.length - 1,
      }[event.key];
      if (to !== undefined) {
        event.preventDefault();
        const next = buttons[(to + buttons.length) % buttons.length];
        select(next.dataset.tab ?? "", true);
      }
    });
  }

  const frame = new AdminFrame(root, { onOpen: () => select(current) });
  const reports = tabs.get("reports");
  const reportsButton = buttons.find((b) => b.dataset.tab === "reports");
  if (reports instanceof ReportsTab && reportsButton) {
    queue = followReports(frame, reportsButton, reports, () => frame.isOpen && current === "reports");
  }
  extendMenu("messenger", () => [
    {
      label: "Admin panel…",
      hint: [
        queue && queue.open > 0 ? reportsText(queue.open) : "",
        TABS.filter((t) => tabs.has(t.name) && t.name !== "dashboard")
          .map((t) => t.label)
          .join(", "),
      ]
        .filter(Boolean)
        .join(" · "),
      command: "admin-panel",
      run: () => frame.open(),
    },
  ]);
}

start();
