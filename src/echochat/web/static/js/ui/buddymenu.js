// @ts-check
/**
 * A buddy's context menu (right-click, or its ⋯ button): send a message, move to a group,
 * appear offline to them (stealth), remove, block, report to the moderators (ui/report.js).
 * Removing and blocking ask first.
 */

import * as net from "../net/buddies.js";
import * as buddies from "../state/buddies.js";
import { openMenu } from "./menu.js";
import { openReport } from "./report.js";

/** @typedef {import("../state/buddies.js").BuddyState} BuddyState */
/** @typedef {import("../state/store.js").Store<BuddyState>} BuddyStore */
/** @typedef {import("./dialogs.js").Dialogs} Dialogs */
/** @typedef {{anchor?: HTMLElement, point?: {x: number, y: number}, returnFocus: HTMLElement}} Where */

/**
 * @param {{store: BuddyStore, dialogs: Dialogs, notify: (message: string, tone?: "info" | "error" | "success") => void, failed: (error: unknown) => void, openChat?: (username: string) => void}} deps
 * @returns {(username: string, where: Where) => void} opens the menu of one buddy
 */
export function buddyMenus({ store, dialogs, notify, failed, openChat }) {
  /** @param {string} username */
  const nameOf = (username) => store.get().buddies[username]?.display_name || username;

  /**
   * @param {string} username
   * @param {boolean} stealth
   */
  async function setStealth(username, stealth) {
    try {
      const buddy = await net.updateBuddy(username, { stealth });
      store.update((s) => buddies.mergeBuddy(s, buddy));
      notify(
        stealth
          ? `You now appear offline to ${nameOf(username)}.`
          : `You are visible to ${nameOf(username)} again.`,
        "success",
      );
    } catch (error) {
      failed(error);
    }
  }

  /** @param {string} username */
  async function removeBuddy(username) {
    const name = nameOf(username);
    const sure = await dialogs.confirm({
      title: "Remove buddy",
      text: `Remove ${name} from your buddy list? You disappear from theirs too.`,
      ok: "Remove",
    });
    if (!sure) {
      return;
    }
    try {
      await net.removeBuddy(username);
      store.update((s) => buddies.withoutBuddy(s, username));
      notify(`Removed ${name}.`, "success");
    } catch (error) {
      failed(error);
    }
  }

  /** @param {string} username */
  async function blockBuddy(username) {
    const name = nameOf(username);
    const sure = await dialogs.confirm({
      title: "Block user",
      text: `Block ${name}? They leave your list, stop seeing you online and cannot add or reach you. They are not told.`,
      ok: "Block",
    });
    if (!sure) {
      return;
    }
    try {
      await net.block(username);
      store.update((s) => buddies.forget(s, username));
      notify(`Blocked ${name}. Contacts › Blocked users… undoes it.`, "success");
    } catch (error) {
      failed(error);
    }
  }

  /**
   * The context menu of one buddy.
   * @param {string} username
   * @param {{anchor?: HTMLElement, point?: {x: number, y: number}, returnFocus: HTMLElement}} where
   */
  function buddyMenu(username, where) {
    const buddy = store.get().buddies[username];
    if (!buddy) {
      return;
    }
    const name = buddy.display_name || username;
    openMenu({
      ...where,
      label: `Actions for ${name}`,
      className: "menu--buddy",
      items: [
        {
          label: "Send a message",
          disabled: !openChat,
          command: "message",
          run: () => openChat?.(username),
        },
        { kind: "separator" },
        { label: "Move to group…", command: "move", run: () => dialogs.openMove(username) },
        {
          kind: "checkbox",
          label: `Appear offline to ${name}`,
          checked: buddy.stealth,
          command: "stealth",
          run: () => setStealth(username, !buddy.stealth),
        },
        { kind: "separator" },
        { label: "Remove buddy…", command: "remove", run: () => removeBuddy(username) },
        { label: `Block ${name}…`, command: "block", run: () => blockBuddy(username) },
        {
          label: `Report ${name}…`,
          command: "report",
          run: () => openReport({ kind: "user", username, name }),
        },
      ],
    });
  }

  return buddyMenu;
}
