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
import { AdminFrame } from "./frame.js";
import { TABS, visibleTabs } from "./state.js";
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
  extendMenu("messenger", () => [
    {
      label: "Admin panel…",
      hint: TABS.filter((t) => tabs.has(t.name) && t.name !== "dashboard")
        .map((t) => t.label)
        .join(", "),
      command: "admin-panel",
      run: () => frame.open(),
    },
  ]);
}

start();
