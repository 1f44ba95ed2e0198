// @ts-check
/**
 * Pop-up menus: the menu bar's drop-downs, the status selector and a buddy's context menu.
 * One menu is open at a time. It follows the WAI-ARIA menu pattern: arrow keys move,
 * Home/End jump, Enter/Space choose, Escape closes and gives focus back to where it came
 * from; Left/Right step to the neighbouring menu of a menu bar. A click elsewhere closes.
 */

import { el } from "./dom.js";

/**
 * @typedef {object} MenuItem
 * @property {string} [label]
 * @property {"item" | "checkbox" | "radio" | "separator"} [kind]
 * @property {boolean} [checked] for checkbox and radio items
 * @property {boolean} [disabled]
 * @property {string} [hint] a second, smaller line
 * @property {string} [dot] a presence dot before the label ("online", "busy", ...)
 * @property {string} [command] a stable name, in data-command
 * @property {() => void} [run]
 */

/**
 * @typedef {object} MenuOptions
 * @property {MenuItem[]} items
 * @property {string} label the menu's accessible name
 * @property {HTMLElement} [anchor] open below this element...
 * @property {{x: number, y: number}} [point] ...or at this point (a right-click)
 * @property {HTMLElement} [returnFocus] where focus goes when the menu closes (default: anchor)
 * @property {(step: -1 | 1) => void} [onSide] Left/Right arrows
 * @property {() => void} [onClose]
 * @property {string} [className]
 */

/** @type {{menu: HTMLElement, options: MenuOptions, cleanup: () => void} | null} */
let current = null;

const ROLES = { item: "menuitem", checkbox: "menuitemcheckbox", radio: "menuitemradio" };

/** @param {HTMLElement | undefined} anchor */
export function isOpenFor(anchor) {
  return current !== null && current.options.anchor === anchor;
}

/** The open menu's element, if any. */
export function openMenuElement() {
  return current?.menu ?? null;
}

/**
 * Close the open menu.
 * @param {boolean} [refocus] give focus back to the element it came from
 */
export function closeMenu(refocus = true) {
  if (!current) {
    return;
  }
  const { menu, options, cleanup } = current;
  current = null;
  cleanup();
  menu.remove();
  options.anchor?.setAttribute("aria-expanded", "false");
  const target = options.returnFocus ?? options.anchor;
  if (refocus && target?.isConnected) {
    target.focus();
  }
  options.onClose?.();
}

/**
 * @param {MenuItem} item
 * @returns {HTMLElement}
 */
function renderItem(item) {
  const kind = item.kind ?? "item";
  if (kind === "separator") {
    return el("div", { className: "menu__separator", attrs: { role: "separator" } });
  }
  const button = el("button", {
    className: "menu__item",
    attrs: { type: "button", role: ROLES[kind], tabindex: "-1" },
  });
  if (item.command) {
    button.dataset.command = item.command;
  }
  if (kind !== "item") {
    button.setAttribute("aria-checked", String(Boolean(item.checked)));
    button.append(
      el("span", {
        className: `menu__check menu__check--${kind}`,
        attrs: { "aria-hidden": "true" },
      }),
    );
  } else {
    button.append(el("span", { className: "menu__check", attrs: { "aria-hidden": "true" } }));
  }
  if (item.dot) {
    button.append(
      el("span", {
        className: `presence-dot presence-dot--${item.dot}`,
        attrs: { "aria-hidden": "true" },
      }),
    );
  }
  const text = el("span", { className: "menu__text" }, [
    el("span", { className: "menu__label", text: item.label ?? "" }),
  ]);
  if (item.hint) {
    text.append(el("span", { className: "menu__hint", text: item.hint }));
  }
  button.append(text);
  if (item.disabled) {
    button.setAttribute("aria-disabled", "true");
  }
  button.addEventListener("click", () => {
    if (item.disabled) {
      return;
    }
    closeMenu();
    item.run?.();
  });
  return button;
}

/**
 * Keep the menu inside the viewport.
 * @param {HTMLElement} menu
 * @param {MenuOptions} options
 */
function place(menu, options) {
  const margin = 4;
  const { innerWidth, innerHeight } = window;
  const size = menu.getBoundingClientRect();
  let x = 0;
  let y = 0;
  if (options.point) {
    ({ x, y } = options.point);
  } else if (options.anchor) {
    const box = options.anchor.getBoundingClientRect();
    x = box.left;
    y = box.bottom + 2;
    if (y + size.height > innerHeight - margin && box.top - size.height - 2 > margin) {
      y = box.top - size.height - 2; // no room below: open upwards
    }
  }
  x = Math.max(margin, Math.min(x, innerWidth - size.width - margin));
  y = Math.max(margin, Math.min(y, innerHeight - size.height - margin));
  menu.style.left = `${Math.round(x)}px`;
  menu.style.top = `${Math.round(y)}px`;
}

/**
 * Open a menu (closing any other).
 * @param {MenuOptions} options
 * @returns {HTMLElement} the menu
 */
export function openMenu(options) {
  closeMenu(false);
  const menu = el("div", {
    className: `menu ${options.className ?? ""}`.trim(),
    attrs: { role: "menu", "aria-label": options.label },
  });
  menu.append(...options.items.map(renderItem));
  document.body.append(menu);
  place(menu, options);
  options.anchor?.setAttribute("aria-expanded", "true");

  const items = () => /** @type {HTMLElement[]} */ ([...menu.querySelectorAll(".menu__item")]);
  /** @param {number} index */
  const focusAt = (index) => {
    const all = items();
    if (all.length) {
      all[(index + all.length) % all.length].focus();
    }
  };
  menu.addEventListener("keydown", (event) => {
    const all = items();
    const at = all.indexOf(/** @type {HTMLElement} */ (document.activeElement));
    const keys = {
      ArrowDown: () => focusAt(at + 1),
      ArrowUp: () => focusAt(at - 1),
      Home: () => focusAt(0),
      End: () => focusAt(all.length - 1),
      Escape: () => closeMenu(),
      Tab: () => closeMenu(),
      ArrowLeft: () => options.onSide?.(-1),
      ArrowRight: () => options.onSide?.(1),
    };
    const action = keys[/** @type {keyof typeof keys} */ (event.key)];
    if (action) {
      event.preventDefault();
      event.stopPropagation();
      action();
    }
  });
  /** @param {Event} event */
  const outside = (event) => {
    const target = /** @type {Node} */ (event.target);
    if (!menu.contains(target) && !options.anchor?.contains(target)) {
      closeMenu(false);
    }
  };
  const onResize = () => closeMenu(false);
  document.addEventListener("pointerdown", outside, true);
  document.addEventListener("focusin", outside, true);
  window.addEventListener("resize", onResize);
  current = {
    menu,
    options,
    cleanup() {
      document.removeEventListener("pointerdown", outside, true);
      document.removeEventListener("focusin", outside, true);
      window.removeEventListener("resize", onResize);
    },
  };
  const chosen = items().findIndex(
    (item) =>
      item.getAttribute("role") === "menuitemradio" && item.getAttribute("aria-checked") === "true",
  );
  const usable = items().findIndex((item) => item.getAttribute("aria-disabled") !== "true");
  focusAt(chosen >= 0 ? chosen : Math.max(usable, 0));
  return menu;
}
