// @ts-check
/**
 * Message text for people: links made clickable and the classic text smileys turned into
 * emoji, built as DOM nodes (textContent only, never markup). Also the emoji picker.
 *
 * - Links: `http://`, `https://` and `mailto:` only, checked again with the URL parser;
 *   a trailing full stop, comma or unmatched bracket stays outside the link. Anything
 *   else (`javascript:`, `data:`) stays plain text.
 * - Smileys: `:)` `;)` `:D` `:(` `:P` `<3` `:O` `:'(` `B)` `:*` `>:(` `:|` and friends, when
 *   they stand alone (after a space or at the start, before a space, punctuation or the
 *   end), never inside a link or a word. The emoji keeps the typed text as its tooltip.
 */

import { el } from "./dom.js";

/** Longest first, so `>:(` wins over `:(` and `:-)` over `:-`. */
export const SHORTCUTS = /** @type {[string, string][]} */ ([
  [">:-(", "😠"],
  [">:(", "😠"],
  [":'-(", "😢"],
  [":'(", "😢"],
  ["O:-)", "😇"],
  ["O:)", "😇"],
  ["=D>", "👏"],
  [":-)", "🙂"],
  [":-(", "🙁"],
  [";-)", "😉"],
  [":-D", "😀"],
  [":-P", "😛"],
  [":-p", "😛"],
  [":-O", "😮"],
  [":-o", "😮"],
  [":-*", "😘"],
  [":-|", "😐"],
  [":-/", "😕"],
  [":-$", "😳"],
  ["B-)", "😎"],
  [":))", "😆"],
  ["=))", "🤣"],
  [":-?", "🤔"],
  [":)", "🙂"],
  [":(", "🙁"],
  [";)", "😉"],
  [":D", "😀"],
  [":P", "😛"],
  [":p", "😛"],
  [":O", "😮"],
  [":o", "😮"],
  [":*", "😘"],
  [":|", "😐"],
  [":/", "😕"],
  [":$", "😳"],
  ["B)", "😎"],
  ["X(", "😡"],
  ["<3", "❤️"],
  ["</3", "💔"],
]).sort((a, b) => b[0].length - a[0].length);

/** The picker's choice, Yahoo's favourites first. */
export const PICKER = [
  "🙂", "😀", "😉", "😆", "🤣", "😛", "😎", "😇", "😘", "😍",
  "🥰", "🤗", "🤔", "😐", "😕", "😮", "😳", "🙁", "😢", "😭",
  "😠", "😡", "🙄", "😴", "🤒", "🤐", "😈", "👻", "🤖", "👽",
  "❤️", "💔", "👍", "👎", "👏", "🙏", "💪", "👋", "🎉", "🎂",
  "🌹", "☕", "🍕", "🍺", "⚽", "🎵", "⭐", "🔥", "💯", "✅",
];

/**
 * @typedef {{kind: "text", text: string} | {kind: "emoji", text: string, emoji: string} |
 *   {kind: "link", text: string, href: string}} Segment
 */

const LINK = /\b(?:https?:\/\/|mailto:)[^\s<>"'`]+/giu;
const SAFE = new Set(["http:", "https:", "mailto:"]);
const TRAILING = /[.,;:!?'"]+$/u;
/** After a smiley: the end, a space or punctuation. */
const AFTER = /^(?:$|[\s.,!?;])/u;

/**
 * The safe URL of a link candidate, or null.
 * @param {string} raw
 * @returns {string | null}
 */
export function safeHref(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  if (!SAFE.has(url.protocol)) {
    return null;
  }
  if (url.protocol !== "mailto:" && !url.hostname) {
    return null;
  }
  return url.href;
}

/**
 * A link candidate without the punctuation that ends the sentence around it.
 * @param {string} raw
 */
function trimLink(raw) {
  let text = raw.replace(TRAILING, "");
  // "(see https://example.org/x)": the closing bracket is the sentence's, unless the
  // link opened one itself (https://en.wikipedia.org/wiki/Foo_(bar)).
  while (text.endsWith(")") && count(text, "(") < count(text, ")")) {
    text = text.slice(0, -1).replace(TRAILING, "");
  }
  return text;
}

/**
 * @param {string} text
 * @param {string} char
 */
function count(text, char) {
  return text.split(char).length - 1;
}

/**
 * Smileys in a piece of text with no link in it.
 * @param {string} text
 * @param {string} [preceding] the character before `text` in the message ("" at its start)
 * @returns {Segment[]}
 */
export function smileys(text, preceding = "") {
  /** @type {Segment[]} */
  const out = [];
  let plain = "";
  let i = 0;
  while (i < text.length) {
    const before = i === 0 ? preceding || " " : text[i - 1];
    let matched = false;
    if (/\s/u.test(before)) {
      for (const [code, emoji] of SHORTCUTS) {
        if (text.startsWith(code, i) && AFTER.test(text.slice(i + code.length))) {
          if (plain) {
            out.push({ kind: "text", text: plain });
            plain = "";
          }
          out.push({ kind: "emoji", text: code, emoji });
          i += code.length;
          matched = true;
          break;
        }
      }
    }
    if (!matched) {
      plain += text[i];
      i += 1;
    }
  }
  if (plain) {
    out.push({ kind: "text", text: plain });
  }
  return out;
}

/**
 * A message's text as segments: plain text, emoji and links.
 * @param {string} text
 * @returns {Segment[]}
 */
export function segments(text) {
  /** @type {Segment[]} */
  const out = [];
  let last = 0;
  for (const match of text.matchAll(LINK)) {
    const start = match.index ?? 0;
    const raw = trimLink(match[0]);
    const href = safeHref(raw);
    if (!href) {
      continue;
    }
    out.push(...smileys(text.slice(last, start), text[last - 1] ?? ""));
    out.push({ kind: "link", text: raw, href });
    last = start + raw.length;
  }
  out.push(...smileys(text.slice(last), text[last - 1] ?? ""));
  return out;
}

/**
 * The message text as DOM nodes.
 * @param {string} text
 * @returns {DocumentFragment}
 */
export function render(text) {
  const fragment = document.createDocumentFragment();
  for (const part of segments(text)) {
    if (part.kind === "text") {
      fragment.append(document.createTextNode(part.text));
    } else if (part.kind === "emoji") {
      fragment.append(
        el("span", {
          className: "emoticon",
          text: part.emoji,
          attrs: { title: part.text, role: "img", "aria-label": part.text },
        }),
      );
    } else {
      const link = el("a", {
        className: "pm-link",
        text: part.text,
        attrs: { target: "_blank", rel: "noopener noreferrer nofollow" },
      });
      link.href = part.href;
      fragment.append(link);
    }
  }
  return fragment;
}

/**
 * A grid of emoji; choosing one calls `onPick` and closes it.
 * @param {HTMLElement} anchor the button that opened it (focus returns there)
 * @param {(emoji: string) => void} onPick
 * @returns {HTMLElement} the picker, already in the DOM next to the anchor
 */
export function openPicker(anchor, onPick) {
  const picker = el("div", {
    className: "emoji-picker",
    attrs: { role: "dialog", "aria-label": "Emoticons" },
  });
  const grid = el("div", { className: "emoji-picker__grid", attrs: { role: "group" } });
  const close = () => {
    picker.remove();
    document.removeEventListener("pointerdown", outside, true);
    anchor.setAttribute("aria-expanded", "false");
  };
  /** @param {Event} event */
  const outside = (event) => {
    const target = /** @type {Node} */ (event.target);
    if (!picker.contains(target) && !anchor.contains(target)) {
      close();
    }
  };
  for (const emoji of PICKER) {
    const button = el("button", {
      className: "emoji-picker__item",
      text: emoji,
      attrs: { type: "button", title: emoji, "aria-label": emoji },
    });
    button.addEventListener("click", () => {
      close();
      onPick(emoji);
    });
    grid.append(button);
  }
  picker.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.stopPropagation();
      close();
      anchor.focus();
    }
  });
  picker.append(grid);
  anchor.after(picker);
  anchor.setAttribute("aria-expanded", "true");
  document.addEventListener("pointerdown", outside, true);
  /** @type {HTMLElement | null} */ (grid.firstElementChild)?.focus();
  return picker;
}
