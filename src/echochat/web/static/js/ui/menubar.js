// @ts-check
/**
 * The window's menu bar ("Messenger  Contacts  Actions  Help"), after the WAI-ARIA menubar
 * pattern: one Tab stop, Left/Right move between the menus (and between open drop-downs),
 * Enter, Space or Down open one; with a menu open, pointing at another opens that one.
 * The items of each menu are built when it opens, so they always show the current state.
 *
 * Other modules may add items to a menu with {@link extendMenu} (e.g. a module loaded only
 * for some users); they appear before the menu's last group (above "Sign out").
 */

import { closeMenu, isOpenFor, openMenu, openMenuElement } from "./menu.js";

/** @typedef {import("./menu.js").MenuItem} MenuItem */

/** @type {Map<string, (() => MenuItem[])[]>} */
const extensions = new Map();

/**
 * Add items to the menu `name` (a button's data-menu); `items` is called each time it opens.
 * @param {string} name
 * @param {() => MenuItem[]} items
 */
export function extendMenu(name, items) {
  extensions.set(name, [...(extensions.get(name) ?? []), items]);
}

/**
 * A menu's own items with the added ones before its last separator (or at its end).
 * @param {MenuItem[]} own
 * @param {MenuItem[]} added
 * @returns {MenuItem[]}
 */
export function withExtensions(own, added) {
  if (!added.length) {
    return own;
  }
  const last = own.map((item) => item.kind).lastIndexOf("separator");
  const at = last >= 0 ? last : own.length;
  return [...own.slice(0, at), { kind: "separator" }, ...added, ...own.slice(at)];
}

/**
 * @param {HTMLElement} bar
 * @param {Record<string, () => MenuItem[]>} menus items by the buttons' data-menu
 */
export function bindMenubar(bar, menus) {
  const buttons = /** @type {HTMLButtonElement[]} */ ([...bar.querySelectorAll("[data-menu]")]);

  /** @param {number} index */
  const focusAt = (index) => {
    const target = buttons[(index + buttons.length) % buttons.length];
    for (const button of buttons) {
      button.tabIndex = button === target ? 0 : -1;
    }
    target.focus();
    return target;
  };

  /** @param {HTMLButtonElement} button */
  const open = (button) => {
    const name = button.dataset.menu ?? "";
    const index = buttons.indexOf(button);
    for (const other of buttons) {
      other.tabIndex = other === button ? 0 : -1;
    }
    openMenu({
      items: withExtensions(
        menus[name]?.() ?? [],
        (extensions.get(name) ?? []).flatMap((items) => items()),
      ),
      label: button.textContent?.trim() ?? name,
      anchor: button,
      className: "menu--dropdown",
      onSide: (step) => open(focusAt(index + step)),
    });
  };

  for (const [index, button] of buttons.entries()) {
    button.addEventListener("click", () => {
      if (isOpenFor(button)) {
        closeMenu();
      } else {
        open(button);
      }
    });
    button.addEventListener("pointerenter", () => {
      const menu = openMenuElement();
      if (menu && menu.classList.contains("menu--dropdown") && !isOpenFor(button)) {
        open(button);
      }
    });
    button.addEventListener("keydown", (event) => {
      const keys = {
        ArrowRight: () => focusAt(index + 1),
        ArrowLeft: () => focusAt(index - 1),
        Home: () => focusAt(0),
        End: () => focusAt(buttons.length - 1),
        ArrowDown: () => open(button),
      };
      const action = keys[/** @type {keyof typeof keys} */ (event.key)];
      if (action) {
        event.preventDefault();
        action();
      }
    });
  }
}
