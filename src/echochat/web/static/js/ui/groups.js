// @ts-check
/**
 * Manage groups: every group with its number of buddies, renamed in place, deleted after a
 * confirmation (its buddies move to the first remaining group, as the server does), and a
 * field to make a new one.
 */

import { byId, el } from "./dom.js";
import { problemText, setStatus } from "./forms.js";
import { openDialog } from "./modal.js";

/** @typedef {import("../state/buddies.js").BuddyState} BuddyState */
/** @typedef {import("../state/store.js").Store<BuddyState>} BuddyStore */
/** @typedef {import("./dialogs.js").Actions} Actions */
/** @typedef {(question: {title: string, text: string, ok: string}) => Promise<boolean>} Confirm */

export class GroupsDialog {
  /** @param {{store: BuddyStore, actions: Actions, confirm: Confirm}} deps */
  constructor({ store, actions, confirm }) {
    this.store = store;
    this.actions = actions;
    this.confirm = confirm;
    this.dialog = byId("groups-dialog", HTMLDialogElement);
    this.key = "";
    this.bind();
    store.subscribe(() => {
      if (this.dialog.open) {
        this.render();
      }
    });
  }

  bind() {
    const form = byId("new-group-form", HTMLFormElement);
    const input = byId("new-group-name", HTMLInputElement);
    const status = byId("groups-status", HTMLElement);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = input.value.trim();
      if (!name) {
        setStatus(status, "Type a name for the new group.", "error");
        input.focus();
        return;
      }
      try {
        await this.actions.createGroup(name);
        input.value = "";
        setStatus(status, `Created the group “${name}”.`, "success");
      } catch (error) {
        setStatus(status, problemText(error), "error");
      }
      input.focus();
    });
  }

  open() {
    this.key = "";
    setStatus(byId("groups-status", HTMLElement), "");
    this.render();
    openDialog(this.dialog);
  }

  render() {
    const state = this.store.get();
    const counts = new Map();
    for (const buddy of Object.values(state.buddies)) {
      counts.set(buddy.group, (counts.get(buddy.group) ?? 0) + 1);
    }
    const key = JSON.stringify([state.groups, [...counts]]);
    if (key === this.key) {
      return;
    }
    this.key = key;
    const list = byId("group-list", HTMLElement);
    list.replaceChildren(
      ...state.groups.map((name) => this.groupItem(name, counts.get(name) ?? 0)),
    );
  }

  /**
   * @param {string} name
   * @param {number} count
   */
  groupItem(name, count) {
    const label = el("span", { className: "group-item__name", text: name });
    const size = el("span", {
      className: "group-item__count",
      text: `${count} ${count === 1 ? "buddy" : "buddies"}`,
    });
    const rename = el("button", {
      className: "button button--small",
      text: "Rename",
      attrs: { type: "button", "aria-label": `Rename ${name}` },
    });
    const remove = el("button", {
      className: "button button--small",
      text: "Delete",
      attrs: { type: "button", "aria-label": `Delete ${name}` },
    });
    const item = el("li", { className: "group-item" }, [label, size, rename, remove]);
    item.dataset.group = name;
    rename.addEventListener("click", () => this.renameInline(item, name));
    remove.addEventListener("click", () => this.deleteGroup(name, count));
    return item;
  }

  /**
   * @param {HTMLElement} item
   * @param {string} name
   */
  renameInline(item, name) {
    const status = byId("groups-status", HTMLElement);
    const input = el("input", {
      className: "field__input",
      attrs: {
        type: "text",
        maxlength: "40",
        "aria-label": `New name for ${name}`,
        autocomplete: "off",
      },
    });
    input.value = name;
    const save = el("button", {
      className: "button button--small button--primary",
      text: "Save",
      attrs: { type: "submit" },
    });
    const cancel = el("button", {
      className: "button button--small",
      text: "Cancel",
      attrs: { type: "button" },
    });
    const form = el("form", { className: "group-item__rename" }, [input, save, cancel]);
    const restore = () => {
      this.key = "";
      this.render();
      const again = byId("group-list", HTMLElement).querySelector(
        `[data-group="${CSS.escape(name)}"] button`,
      );
      if (again instanceof HTMLElement) {
        again.focus();
      }
    };
    cancel.addEventListener("click", restore);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation(); // the dialog stays open
        restore();
      }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const next = input.value.trim();
      if (!next || next === name) {
        restore();
        return;
      }
      try {
        await this.actions.renameGroup(name, next);
        setStatus(status, `Renamed “${name}” to “${next}”.`, "success");
        const renamed = byId("group-list", HTMLElement).querySelector(
          `[data-group="${CSS.escape(next)}"] button`,
        );
        if (renamed instanceof HTMLElement) {
          renamed.focus();
        }
      } catch (error) {
        setStatus(status, problemText(error), "error");
        input.focus();
      }
    });
    item.replaceChildren(form);
    input.focus();
    input.select();
  }

  /**
   * @param {string} name
   * @param {number} count
   */
  async deleteGroup(name, count) {
    const rest = this.store.get().groups.filter((g) => g !== name);
    const where = rest[0] ?? "Buddies";
    const text = count
      ? `Delete the group “${name}”? Its ${count === 1 ? "buddy moves" : `${count} buddies move`} to “${where}”.`
      : `Delete the empty group “${name}”?`;
    if (!(await this.confirm({ title: "Delete group", text, ok: "Delete group" }))) {
      return;
    }
    const status = byId("groups-status", HTMLElement);
    try {
      await this.actions.deleteGroup(name);
      setStatus(status, `Deleted the group “${name}”.`, "success");
    } catch (error) {
      setStatus(status, problemText(error), "error");
    }
    status.focus();
  }
}
