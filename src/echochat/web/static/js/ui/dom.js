// @ts-check
/** Building DOM nodes. Text always goes in with textContent, never as markup. */

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {{className?: string, text?: string, attrs?: Record<string, string | boolean>}} [options]
 *   `attrs`: true gives a bare attribute, false none
 * @param {(Node | string)[]} [children]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.className) {
    node.className = options.className;
  }
  if (options.text !== undefined) {
    node.textContent = options.text;
  }
  for (const [name, value] of Object.entries(options.attrs ?? {})) {
    if (value === true) {
      node.setAttribute(name, "");
    } else if (value !== false) {
      node.setAttribute(name, value);
    }
  }
  node.append(...children);
  return node;
}

/**
 * The element with this id, checked to be of the expected class.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} type
 * @returns {T}
 */
export function byId(id, type) {
  const node = document.getElementById(id);
  if (!(node instanceof type)) {
    throw new Error(`#${id} is missing from the page`);
  }
  return node;
}

/**
 * Replace the options of a <select> with `groups`, choosing `chosen` (default: the first).
 * @param {HTMLSelectElement} select
 * @param {string[]} groups
 * @param {string} [chosen]
 */
export function fillSelect(select, groups, chosen) {
  select.replaceChildren(
    ...groups.map((name) => el("option", { text: name, attrs: { value: name } })),
  );
  select.value = chosen && groups.includes(chosen) ? chosen : (groups[0] ?? "");
}
