// @ts-check
/**
 * The buddy list's dialogs (markup in templates/_buddy_dialogs.html): add a buddy, move a
 * buddy, blocked users, a confirmation and About here; the pending requests in
 * requests.js, manage groups in groups.js. DOM only: the work is done by the actions
 * passed in, which talk to the API and update the state.
 */

import { byId, el, fillSelect } from "./dom.js";
import { bindForm, problemText, setStatus } from "./forms.js";
import { GroupsDialog } from "./groups.js";
import { openDialog } from "./modal.js";
import { RequestsDialog } from "./requests.js";

/** @typedef {import("../state/buddies.js").BuddyState} BuddyState */
/** @typedef {import("../state/store.js").Store<BuddyState>} BuddyStore */

/**
 * @typedef {object} Actions
 * @property {(username: string, message: string, group: string) => Promise<void>} sendRequest
 * @property {(id: number, group: string) => Promise<void>} accept
 * @property {(id: number) => Promise<void>} decline
 * @property {(id: number) => Promise<void>} cancel
 * @property {(username: string, group: string) => Promise<void>} move
 * @property {(name: string) => Promise<void>} createGroup
 * @property {(from: string, to: string) => Promise<void>} renameGroup
 * @property {(name: string) => Promise<void>} deleteGroup
 * @property {() => Promise<{username: string, display_name: string}[]>} blocked
 * @property {(username: string) => Promise<void>} unblock
 */

/**
 * Ask a yes/no question in the page's confirmation dialog; resolves true for OK. (Also used
 * by modules outside the buddy list, e.g. the admin panel.)
 * @param {{title: string, text: string, ok: string}} question
 * @returns {Promise<boolean>}
 */
export function askConfirm(question) {
  const dialog = byId("confirm-dialog", HTMLDialogElement);
  byId("confirm-title", HTMLElement).textContent = question.title;
  byId("confirm-text", HTMLElement).textContent = question.text;
  byId("confirm-ok", HTMLButtonElement).textContent = question.ok;
  dialog.returnValue = "";
  openDialog(dialog, byId("confirm-cancel", HTMLButtonElement));
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

export class Dialogs {
  /**
   * @param {{store: BuddyStore, actions: Actions, notify: (message: string, tone?: "info" | "error" | "success") => void}} deps
   */
  constructor({ store, actions, notify }) {
    this.store = store;
    this.actions = actions;
    this.notify = notify;
    this.add = byId("add-buddy-dialog", HTMLDialogElement);
    this.move = byId("move-dialog", HTMLDialogElement);
    this.blockedDialog = byId("blocked-dialog", HTMLDialogElement);
    this.about = byId("about-dialog", HTMLDialogElement);
    /** @type {string} */
    this.moving = "";
    this.bindAdd();
    this.bindMove();
    this.requests = new RequestsDialog({ store, actions });
    this.groups = new GroupsDialog({ store, actions, confirm: (q) => this.confirm(q) });
  }

  openRequests() {
    this.requests.open();
  }

  openGroups() {
    this.groups.open();
  }

  // --- add a buddy -------------------------------------------------------------------------

  bindAdd() {
    const form = byId("add-buddy-form", HTMLFormElement);
    bindForm(
      form,
      async ({ username, message, group }) => {
        const who = username.trim();
        await this.actions.sendRequest(who, message.trim(), group);
        this.add.close();
        this.notify(
          `Request sent to ${who}. They appear in your list once they accept.`,
          "success",
        );
      },
      {
        explain: (error) => {
          const about = {
            user_not_found: "there is no user with that name",
            cannot_add_self: "that is you; add someone else",
            already_buddies: error.message,
            blocked: error.message,
          }[error.code];
          if (about) {
            return { field: "username", message: about };
          }
          return error.code === "message_too_long"
            ? { field: "message", message: error.message }
            : null;
        },
      },
    );
  }

  openAddBuddy() {
    const form = byId("add-buddy-form", HTMLFormElement);
    form.reset();
    for (const box of form.querySelectorAll(".field__error, [data-form-status]")) {
      box.replaceChildren();
    }
    for (const input of form.querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
    }
    fillSelect(byId("add-buddy-group", HTMLSelectElement), this.store.get().groups);
    openDialog(this.add, byId("add-buddy-username", HTMLInputElement));
  }

  // --- move a buddy --------------------------------------------------------------------------

  bindMove() {
    const form = byId("move-form", HTMLFormElement);
    bindForm(form, async ({ group, new_group: fresh }) => {
      const target = fresh.trim() || group;
      await this.actions.move(this.moving, target);
      this.move.close();
      this.notify(`Moved ${this.moving} to “${target}”.`, "success");
    });
  }

  /** @param {string} username */
  openMove(username) {
    const buddy = this.store.get().buddies[username];
    if (!buddy) {
      return;
    }
    this.moving = username;
    const form = byId("move-form", HTMLFormElement);
    form.reset();
    setStatus(byId("move-status", HTMLElement), "");
    byId("move-intro", HTMLElement).textContent =
      `Move ${buddy.display_name || username} to another group.`;
    fillSelect(byId("move-group", HTMLSelectElement), this.store.get().groups, buddy.group);
    openDialog(this.move, byId("move-group", HTMLSelectElement));
  }

  // --- blocked users -------------------------------------------------------------------------

  async openBlocked() {
    const list = byId("blocked-list", HTMLElement);
    const empty = byId("blocked-empty", HTMLElement);
    const status = byId("blocked-status", HTMLElement);
    setStatus(status, "");
    list.replaceChildren();
    empty.hidden = true;
    openDialog(this.blockedDialog);
    try {
      const blocked = await this.actions.blocked();
      list.replaceChildren(
        ...blocked.map((user) => {
          const unblock = el("button", {
            className: "button button--small",
            text: "Unblock",
            attrs: {
              type: "button",
              "aria-label": `Unblock ${user.display_name || user.username}`,
            },
          });
          const item = el("li", { className: "group-item" }, [
            el("span", { className: "group-item__name", text: user.display_name || user.username }),
            el("span", { className: "group-item__count", text: user.username }),
            unblock,
          ]);
          unblock.addEventListener("click", async () => {
            unblock.disabled = true;
            try {
              await this.actions.unblock(user.username);
              item.remove();
              empty.hidden = list.children.length > 0;
              setStatus(status, `Unblocked ${user.username}.`, "success");
              status.focus();
            } catch (error) {
              unblock.disabled = false;
              setStatus(status, problemText(error), "error");
            }
          });
          return item;
        }),
      );
      empty.hidden = blocked.length > 0;
    } catch (error) {
      setStatus(status, problemText(error), "error");
    }
  }

  // --- confirmation and About ----------------------------------------------------------------

  /**
   * Ask a yes/no question; resolves true for OK.
   * @param {{title: string, text: string, ok: string}} question
   * @returns {Promise<boolean>}
   */
  confirm(question) {
    return askConfirm(question);
  }

  openAbout() {
    openDialog(this.about);
  }
}
