// @ts-check
/**
 * The status selector at the top of the buddy list: a button showing my state (Available,
 * Busy, Away, Invisible, or "Away (idle)") that opens a menu of states, and the custom
 * message field under it (at most 140 characters; Enter or leaving the field saves,
 * Escape undoes). DOM only: choices go out through the handlers.
 */

import { CHOICES, cleanStatus, shownSelf, statusProblem } from "../state/presence.js";
import { openMenu } from "./menu.js";

/** @typedef {import("../state/presence.js").MyPresence} MyPresence */
/** @typedef {import("../state/presence.js").Choice} Choice */
/** @typedef {import("./menu.js").MenuItem} MenuItem */

/**
 * @typedef {object} StatusElements
 * @property {HTMLButtonElement} button
 * @property {HTMLElement} label
 * @property {HTMLElement[]} dots presence dots that follow my state
 * @property {HTMLInputElement} input
 * @property {HTMLElement} hook the element that carries data-my-state (for tests and CSS)
 */

/**
 * @typedef {object} StatusHandlers
 * @property {(state: Choice) => void} onChoose
 * @property {(text: string) => void} onText
 * @property {(message: string) => void} onProblem
 */

export class StatusControl {
  /**
   * @param {StatusElements} elements
   * @param {StatusHandlers} handlers
   */
  constructor(elements, handlers) {
    this.elements = elements;
    this.handlers = handlers;
    /** @type {MyPresence} */
    this.mine = { state: "online", status: "" };
    this.idle = false;
    const { button, input } = elements;
    button.addEventListener("click", () => this.openMenu());
    button.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown") {
        event.preventDefault();
        this.openMenu();
      }
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        this.save();
      } else if (event.key === "Escape") {
        event.preventDefault();
        input.value = this.mine.status;
      }
    });
    input.addEventListener("blur", () => this.save());
  }

  /** The items of the status menu (also the Actions menu's). @returns {MenuItem[]} */
  items() {
    return [
      ...CHOICES.map((choice) => ({
        kind: /** @type {const} */ ("radio"),
        label: choice.label,
        hint: choice.hint,
        dot: choice.state === "invisible" ? "offline" : choice.state,
        checked: this.mine.state === choice.state,
        command: `status-${choice.state}`,
        run: () => this.handlers.onChoose(choice.state),
      })),
      { kind: /** @type {const} */ ("separator") },
      {
        label: "Edit status message",
        command: "status-message",
        run: () => this.editText(),
      },
    ];
  }

  openMenu() {
    openMenu({
      items: this.items(),
      label: "My status",
      anchor: this.elements.button,
      className: "menu--status",
    });
  }

  editText() {
    this.elements.input.focus();
    this.elements.input.select();
  }

  save() {
    const { input } = this.elements;
    const problem = statusProblem(input.value);
    if (problem) {
      this.handlers.onProblem(problem);
      return;
    }
    const text = cleanStatus(input.value);
    input.value = text;
    if (text !== this.mine.status) {
      this.handlers.onText(text);
    }
  }

  /**
   * Show my presence.
   * @param {MyPresence} mine
   * @param {boolean} idle
   */
  show(mine, idle) {
    this.mine = mine;
    this.idle = idle;
    const shown = shownSelf(mine, idle);
    const dot = shown.state === "invisible" ? "offline" : shown.state;
    this.elements.label.textContent = shown.label;
    for (const node of this.elements.dots) {
      node.className = node.className.replace(/presence-dot--\w+/, `presence-dot--${dot}`);
    }
    this.elements.hook.dataset.myState = shown.state;
    this.elements.button.title =
      mine.state === "invisible"
        ? "You appear offline to everyone"
        : `You appear ${shown.label.toLowerCase()}`;
    if (document.activeElement !== this.elements.input) {
      this.elements.input.value = mine.status;
    }
  }
}
