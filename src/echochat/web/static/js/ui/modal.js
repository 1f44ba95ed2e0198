// @ts-check
/**
 * Modal dialogs on the native <dialog> element: `showModal()` makes the rest of the page
 * inert and Escape cancels; on top of that Tab and Shift+Tab cycle inside the dialog (the
 * focus trap), and focus goes back to where it was when the dialog closes. Buttons marked
 * `data-dialog-close` close their dialog.
 */

import { closeMenu } from "./menu.js";

const FOCUSABLE = [
  "a[href]",
  "button:not([disabled])",
  "input:not([disabled]):not([type=hidden])",
  "select:not([disabled])",
  "textarea:not([disabled])",
  "[tabindex]:not([tabindex='-1'])",
].join(",");

/** @type {WeakMap<HTMLDialogElement, Element | null>} */
const openers = new WeakMap();
/** @type {WeakSet<HTMLDialogElement>} */
const wired = new WeakSet();

/**
 * The elements Tab can reach inside `root`, in order.
 * @param {HTMLElement} root
 */
export function focusables(root) {
  return /** @type {HTMLElement[]} */ ([...root.querySelectorAll(FOCUSABLE)]).filter(
    (node) => !node.closest("[hidden]") && node.getClientRects().length > 0,
  );
}

/** @param {HTMLDialogElement} dialog */
function wire(dialog) {
  if (wired.has(dialog)) {
    return;
  }
  wired.add(dialog);
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") {
      return;
    }
    const all = focusables(dialog);
    if (!all.length) {
      event.preventDefault();
      return;
    }
    const first = all[0];
    const last = all[all.length - 1];
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });
  dialog.addEventListener("click", (event) => {
    const target = /** @type {Element} */ (event.target);
    if (target.closest("[data-dialog-close]")) {
      dialog.close();
    } else if (target === dialog) {
      dialog.close(); // a click on the backdrop
    }
  });
  dialog.addEventListener("close", () => {
    const opener = openers.get(dialog);
    openers.delete(dialog);
    if (opener instanceof HTMLElement && opener.isConnected) {
      opener.focus();
    }
  });
}

/**
 * Show `dialog` as a modal and focus `focus` (default: its first field or button).
 * @param {HTMLDialogElement} dialog
 * @param {HTMLElement | null} [focus]
 */
export function openDialog(dialog, focus) {
  closeMenu(false);
  wire(dialog);
  if (!dialog.open) {
    openers.set(dialog, document.activeElement);
    dialog.showModal();
  }
  (
    focus ??
    focusables(dialog).find((node) => !node.matches("[data-dialog-close]")) ??
    dialog
  ).focus();
}

/**
 * Where focus should go when `dialog` closes (e.g. a menu button, not the menu item that
 * is gone by then).
 * @param {HTMLDialogElement} dialog
 * @param {Element | null} opener
 */
export function setOpener(dialog, opener) {
  openers.set(dialog, opener);
}
