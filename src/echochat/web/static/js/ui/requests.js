// @ts-check
/**
 * The pending requests panel: requests waiting for my answer (accept into a group of my
 * choice, or decline) and mine waiting for theirs (cancel). It follows the state while
 * open: a request answered elsewhere disappears from it.
 */

import { byId, el, fillSelect } from "./dom.js";
import { problemText, setStatus } from "./forms.js";
import { openDialog } from "./modal.js";

/** @typedef {import("../state/buddies.js").BuddyState} BuddyState */
/** @typedef {import("../state/buddies.js").BuddyRequest} BuddyRequest */
/** @typedef {import("../state/store.js").Store<BuddyState>} BuddyStore */
/** @typedef {import("./dialogs.js").Actions} Actions */

const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export class RequestsDialog {
  /** @param {{store: BuddyStore, actions: Actions}} deps */
  constructor({ store, actions }) {
    this.store = store;
    this.actions = actions;
    this.dialog = byId("requests-dialog", HTMLDialogElement);
    this.key = "";
    store.subscribe(() => {
      if (this.dialog.open) {
        this.render();
      }
    });
  }

  open() {
    this.key = "";
    setStatus(byId("requests-status", HTMLElement), "");
    this.render();
    openDialog(this.dialog);
  }

  render() {
    const { incoming, outgoing, groups } = this.store.get();
    const key = JSON.stringify([incoming.map((r) => r.id), outgoing.map((r) => r.id), groups]);
    if (key === this.key) {
      return;
    }
    this.key = key;
    const inList = byId("incoming-list", HTMLElement);
    const outList = byId("outgoing-list", HTMLElement);
    inList.replaceChildren(...incoming.map((r) => this.incomingItem(r, groups)));
    outList.replaceChildren(...outgoing.map((r) => this.outgoingItem(r)));
    byId("incoming-empty", HTMLElement).hidden = incoming.length > 0;
    byId("outgoing-empty", HTMLElement).hidden = outgoing.length > 0;
    if (this.dialog.open && !this.dialog.contains(document.activeElement)) {
      openDialog(this.dialog); // the focused button went away with its request
    }
  }

  /**
   * @param {BuddyRequest} request
   * @param {string} name
   * @param {string} username
   */
  requestHead(request, name, username) {
    const id = `request-${request.id}`;
    const head = el("p", { className: "request__who" }, [
      el("span", { className: "request__name", text: name, attrs: { id } }),
      el("span", { className: "request__user", text: username }),
    ]);
    const time = el("time", {
      className: "request__when",
      attrs: { datetime: request.created_at },
    });
    const date = new Date(request.created_at);
    time.textContent = Number.isNaN(date.getTime()) ? "" : when.format(date);
    /** @type {HTMLElement[]} */
    const nodes = [head];
    if (request.message) {
      nodes.push(el("blockquote", { className: "request__message", text: request.message }));
    }
    nodes.push(time);
    return { id, nodes };
  }

  /**
   * @param {BuddyRequest} request
   * @param {string[]} groups
   */
  incomingItem(request, groups) {
    const { id, nodes } = this.requestHead(
      request,
      request.from_display_name,
      request.from_username,
    );
    const select = el("select", {
      className: "field__input field__select request__group",
      attrs: { "aria-label": "Add to group" },
    });
    fillSelect(select, groups);
    const accept = el("button", {
      className: "button button--primary",
      text: "Accept",
      attrs: { type: "button", "aria-describedby": id },
    });
    const decline = el("button", {
      className: "button",
      text: "Decline",
      attrs: { type: "button", "aria-describedby": id },
    });
    accept.addEventListener("click", () =>
      this.requestAction(
        accept,
        () => this.actions.accept(request.id, select.value),
        `${request.from_display_name} is now your buddy.`,
      ),
    );
    decline.addEventListener("click", () =>
      this.requestAction(
        decline,
        () => this.actions.decline(request.id),
        `Declined ${request.from_display_name}'s request.`,
      ),
    );
    const actions = el("div", { className: "request__actions" }, [
      el("label", { className: "request__label", text: "Group" }, [select]),
      decline,
      accept,
    ]);
    const item = el("li", { className: "request" }, [...nodes, actions]);
    item.dataset.requestId = String(request.id);
    return item;
  }

  /** @param {BuddyRequest} request */
  outgoingItem(request) {
    const { id, nodes } = this.requestHead(request, request.to_username, "");
    const cancel = el("button", {
      className: "button",
      text: "Cancel request",
      attrs: { type: "button", "aria-describedby": id },
    });
    cancel.addEventListener("click", () =>
      this.requestAction(
        cancel,
        () => this.actions.cancel(request.id),
        `Cancelled your request to ${request.to_username}.`,
      ),
    );
    const item = el("li", { className: "request request--outgoing" }, [
      ...nodes,
      el("div", { className: "request__actions" }, [cancel]),
    ]);
    item.dataset.requestId = String(request.id);
    return item;
  }

  /**
   * @param {HTMLButtonElement} button
   * @param {() => Promise<void>} work
   * @param {string} done
   */
  async requestAction(button, work, done) {
    const status = byId("requests-status", HTMLElement);
    button.disabled = true;
    try {
      await work();
      setStatus(status, done, "success");
    } catch (error) {
      button.disabled = false;
      setStatus(status, problemText(error), "error");
      this.key = ""; // the request may be gone: show the list as it is now
      this.render();
    }
  }
}
