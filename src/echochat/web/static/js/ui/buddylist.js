// @ts-check
/**
 * Renders the buddy list: groups that fold ("Friends  2/5 online"), and per buddy a
 * presence dot, the display name, the custom status line, an unread badge (messages not
 * read yet, from state/conversations.js through {@link BuddyListView#setUnread}), a
 * "stealth" tag when I appear offline to them, and a "⋯" button for the context menu
 * (which a right-click opens too). A double-click, or Enter on the row, opens the
 * conversation. DOM only: the state comes from state/buddies.js and every action goes back
 * through the handlers.
 *
 * The whole list is rebuilt on each change (it is small); focus is kept on the same
 * button across rebuilds through `data-focus-key`.
 */

import { countText, groupViews } from "../state/buddies.js";
import { el } from "./dom.js";

/** @typedef {import("../state/buddies.js").BuddyState} BuddyState */
/** @typedef {import("../state/buddies.js").Buddy} Buddy */
/** @typedef {import("../state/buddies.js").GroupView} GroupView */

/**
 * @typedef {object} ListHandlers
 * @property {(group: string) => void} onToggle
 * @property {(username: string) => void} [onOpen] open the conversation
 * @property {(username: string, where: {anchor?: HTMLElement, point?: {x: number, y: number}, returnFocus: HTMLElement}) => void} onMenu
 */

/** @type {Record<string, string>} */
const SHOWN = { online: "Online", away: "Away", busy: "Busy", offline: "Offline" };

export class BuddyListView {
  /**
   * @param {HTMLElement} root
   * @param {ListHandlers} handlers
   */
  constructor(root, handlers) {
    this.root = root;
    this.handlers = handlers;
    /** @type {Record<string, {unread: number, offline: number}>} */
    this.unread = {};
    root.addEventListener("dblclick", (event) => {
      const row = /** @type {Element} */ (event.target).closest(".buddy");
      const onButton = /** @type {Element} */ (event.target).closest("button");
      if (row instanceof HTMLElement && row.dataset.username && !onButton) {
        handlers.onOpen?.(row.dataset.username);
      }
    });
    root.addEventListener("keydown", (event) => {
      const row = /** @type {Element} */ (event.target);
      const isRow = row instanceof HTMLElement && row.classList.contains("buddy");
      if (event.key === "Enter" && isRow && row.dataset.username) {
        event.preventDefault();
        handlers.onOpen?.(row.dataset.username);
      }
    });
    root.addEventListener("contextmenu", (event) => {
      const row = /** @type {Element} */ (event.target).closest(".buddy");
      if (!(row instanceof HTMLElement) || !row.dataset.username) {
        return;
      }
      event.preventDefault();
      const more = /** @type {HTMLElement} */ (row.querySelector(".buddy__more"));
      handlers.onMenu(row.dataset.username, {
        point: { x: event.clientX, y: event.clientY },
        returnFocus: more,
      });
    });
  }

  /**
   * The unread counts per buddy (shown on the rows at once, and on every render).
   * @param {Record<string, {unread: number, offline: number}>} counts
   */
  setUnread(counts) {
    this.unread = counts;
    for (const row of this.root.querySelectorAll(".buddy")) {
      if (row instanceof HTMLElement && row.dataset.username) {
        const badge = row.querySelector(".buddy__unread");
        if (badge instanceof HTMLElement) {
          this.showUnread(badge, row.dataset.username);
        }
      }
    }
  }

  /**
   * @param {HTMLElement} badge
   * @param {string} username
   */
  showUnread(badge, username) {
    const count = this.unread[username];
    const unread = count?.unread ?? 0;
    badge.hidden = unread === 0;
    badge.textContent = unread ? String(unread) : "";
    badge.dataset.unread = String(unread);
    badge.title = !unread
      ? ""
      : `${unread} unread message${unread === 1 ? "" : "s"}` +
        (count.offline ? ` (${count.offline} sent while you were away)` : "");
  }

  /** @param {BuddyState} state */
  render(state) {
    if (!state.loaded) {
      return;
    }
    const focused = document.activeElement;
    const key =
      focused instanceof HTMLElement && this.root.contains(focused)
        ? focused.dataset.focusKey
        : undefined;
    const groups = groupViews(state);
    const empty = Object.keys(state.buddies).length === 0;
    const nodes = groups.map((group, index) => this.renderGroup(group, index, !empty));
    if (empty) {
      nodes.push(
        el("p", {
          className: "buddy-list__empty",
          text:
            "No buddies yet. Choose Contacts › Add a buddy… to invite someone, then " +
            "double-click them to send a private message.",
        }),
      );
    }
    this.root.replaceChildren(...nodes);
    this.root.setAttribute("aria-busy", "false");
    if (key) {
      const again = this.root.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
      if (again instanceof HTMLElement) {
        again.focus();
      }
    }
  }

  /**
   * @param {GroupView} group
   * @param {number} index
   * @param {boolean} sayEmpty say "Nobody in this group" when it is (not when all are)
   */
  renderGroup(group, index, sayEmpty) {
    const listId = `buddy-group-${index}`;
    const toggle = el(
      "button",
      {
        className: "buddy-group__toggle",
        attrs: { type: "button", "aria-expanded": String(!group.folded), "aria-controls": listId },
      },
      [
        el("span", { className: "buddy-group__arrow", attrs: { "aria-hidden": "true" } }),
        el("span", { className: "buddy-group__name", text: group.name }),
        el("span", { className: "buddy-group__count", text: countText(group.online, group.total) }),
      ],
    );
    toggle.dataset.focusKey = `group:${group.name}`;
    toggle.addEventListener("click", () => this.handlers.onToggle(group.name));
    const list = el("ul", {
      className: "buddy-group__list",
      attrs: { id: listId, "aria-label": group.name },
    });
    list.hidden = group.folded;
    list.append(...group.buddies.map((buddy) => this.renderBuddy(buddy)));
    if (!group.buddies.length && sayEmpty) {
      list.append(el("li", { className: "buddy-group__none", text: "Nobody in this group" }));
    }
    const section = el("section", { className: "buddy-group" }, [
      el("h3", { className: "buddy-group__head" }, [toggle]),
      list,
    ]);
    section.dataset.group = group.name;
    section.classList.toggle("buddy-group--folded", group.folded);
    return section;
  }

  /** @param {Buddy} buddy */
  renderBuddy(buddy) {
    const name = buddy.display_name || buddy.username;
    const shown = SHOWN[buddy.state] ?? "Offline";
    const text = el("span", { className: "buddy__text" }, [
      el("span", { className: "buddy__name", text: name }),
    ]);
    if (buddy.status) {
      text.append(el("span", { className: "buddy__status", text: buddy.status }));
    } else if (buddy.state === "away" || buddy.state === "busy") {
      text.append(el("span", { className: "buddy__status buddy__status--auto", text: shown }));
    }
    const row = el(
      "li",
      { className: `buddy buddy--${buddy.state}`, attrs: { title: `${name} (${buddy.username})` } },
      [
        el("span", {
          className: `buddy__dot presence-dot presence-dot--${buddy.state}`,
          attrs: { role: "img", "aria-label": shown },
        }),
        text,
      ],
    );
    row.dataset.username = buddy.username;
    row.dataset.state = buddy.state;
    row.dataset.focusKey = `row:${buddy.username}`;
    row.tabIndex = 0;
    row.dataset.stealth = String(buddy.stealth);
    if (buddy.stealth) {
      row.append(
        el("span", {
          className: "buddy__tag",
          text: "stealth",
          attrs: { title: `You appear offline to ${name}` },
        }),
      );
    }
    const unread = el("span", { className: "buddy__unread", attrs: { "data-unread": "0" } });
    this.showUnread(unread, buddy.username);
    const more = el("button", {
      className: "buddy__more",
      text: "⋯",
      attrs: {
        type: "button",
        "aria-haspopup": "menu",
        "aria-expanded": "false",
        "aria-label": `Actions for ${name}`,
      },
    });
    more.dataset.focusKey = `more:${buddy.username}`;
    more.addEventListener("click", () =>
      this.handlers.onMenu(buddy.username, { anchor: more, returnFocus: more }),
    );
    row.append(unread, more);
    return row;
  }
}
