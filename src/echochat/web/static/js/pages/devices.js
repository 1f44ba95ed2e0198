// @ts-check
/** /devices: the caller's signed-in devices, and signing them out. */

import { ApiError, api } from "../net/api.js";
import { setStatus } from "../ui/forms.js";
import { signInAgain } from "../ui/navigate.js";
import { bindSignOut } from "./signout.js";

/**
 * @typedef {object} Session
 * @property {string} id
 * @property {string} device_label
 * @property {string} ip
 * @property {string} created_at ISO 8601
 * @property {string} last_seen_at ISO 8601
 * @property {boolean} current
 */

const list = document.getElementById("device-list");
const status = document.getElementById("devices-status");
const count = document.getElementById("device-count");
const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** @param {string} iso */
function formatTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : when.format(date);
}

/**
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]
 */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/**
 * @param {HTMLElement} dl
 * @param {string} term
 * @param {string} value
 * @param {string} [datetime]
 */
function addDetail(dl, term, value, datetime) {
  const item = el("div", "device__detail");
  const dd = el("dd");
  if (datetime) {
    const time = el("time", undefined, value);
    time.setAttribute("datetime", datetime);
    dd.append(time);
  } else {
    dd.textContent = value;
  }
  item.append(el("dt", undefined, term), dd);
  dl.append(item);
}

/** @param {number} n */
function showCount(n) {
  if (count) {
    count.textContent = `${n} device${n === 1 ? "" : "s"}`;
  }
}

/**
 * @param {Session} session
 * @returns {HTMLLIElement}
 */
function renderDevice(session) {
  const item = /** @type {HTMLLIElement} */ (el("li", "device"));
  item.classList.toggle("device--current", session.current);
  const head = el("div", "device__head");
  const name = el("h3", "device__name", session.device_label || "Unknown device");
  name.id = `device-${session.id.slice(0, 16)}`;
  head.append(el("span", "device__icon"), name);
  if (session.current) {
    head.append(el("span", "badge badge--current", "This device"));
  }
  const details = el("dl", "device__details");
  addDetail(details, "IP address", session.ip);
  addDetail(details, "Signed in", formatTime(session.created_at), session.created_at);
  addDetail(details, "Last seen", formatTime(session.last_seen_at), session.last_seen_at);
  item.append(head, details);
  const button = /** @type {HTMLButtonElement} */ (el("button", "button device__sign-out"));
  button.type = "button";
  button.textContent = "Sign out";
  button.setAttribute("aria-describedby", name.id);
  if (session.current) {
    bindSignOut(button, (message) => setStatus(status, message, "error"));
  } else {
    button.addEventListener("click", () => revoke(session, item, button));
  }
  item.append(button);
  return item;
}

/**
 * @param {Session} session
 * @param {HTMLLIElement} item
 * @param {HTMLButtonElement} button
 */
async function revoke(session, item, button) {
  button.disabled = true;
  try {
    await api("DELETE", `/auth/sessions/${encodeURIComponent(session.id)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      signInAgain();
      return;
    }
    button.disabled = false;
    if (!(error instanceof ApiError && error.status === 404)) {
      setStatus(status, `Could not sign that device out: ${/** @type {Error} */ (error).message}`, "error");
      return;
    }
    // 404: it had already ended; drop it from the list like a success.
  }
  item.remove();
  showCount(list?.children.length ?? 0);
  setStatus(status, `Signed out ${session.device_label || "that device"}.`, "success");
  status?.focus();
}

async function load() {
  if (!list) {
    return;
  }
  /** @type {Session[]} */
  let sessions;
  try {
    sessions = await api("GET", "/auth/sessions");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      signInAgain();
      return;
    }
    setStatus(status, `Could not load your devices: ${/** @type {Error} */ (error).message}`, "error");
    return;
  }
  // This device first, then the most recently seen.
  sessions.sort(
    (a, b) => Number(b.current) - Number(a.current) || b.last_seen_at.localeCompare(a.last_seen_at),
  );
  list.replaceChildren(...sessions.map(renderDevice));
  list.setAttribute("aria-busy", "false");
  showCount(sessions.length);
}

await load();
