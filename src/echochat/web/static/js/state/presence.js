// @ts-check
/**
 * My own presence: the states I can choose, the custom status text rules (the server's:
 * plain text, trimmed, at most 140 characters), and idle detection as a pure policy with
 * time passed in. ui/idle.js feeds it the page's input and visibility; after `timeoutMs`
 * without either the client reports `presence.set {idle: true}` (the server then shows an
 * "online" device as away), and `{idle: false}` on the next activity.
 */

/** @typedef {"online" | "away" | "busy" | "invisible"} Choice */

/**
 * @typedef {object} MyPresence
 * @property {Choice} state what I chose
 * @property {string} status my custom status text
 */

/**
 * @typedef {object} IdleTracker
 * @property {number} timeoutMs
 * @property {number} lastActive epoch ms of the last input while the page was visible
 * @property {boolean} idle
 */

/** @type {{state: Choice, label: string, hint: string}[]} */
export const CHOICES = [
  { state: "online", label: "Available", hint: "" },
  { state: "busy", label: "Busy", hint: "" },
  { state: "away", label: "Away", hint: "" },
  { state: "invisible", label: "Invisible", hint: "You appear offline to everyone" },
];

/** @type {Record<string, string>} */
export const STATE_LABELS = {
  online: "Available",
  busy: "Busy",
  away: "Away",
  invisible: "Invisible",
  offline: "Offline",
};

export const STATUS_MAX = 140;
export const DEFAULT_IDLE_SECONDS = 300;
const MAX_IDLE_SECONDS = 86_400;

/**
 * The status text as the server will keep it: one line, trimmed.
 * @param {string} text
 */
export function cleanStatus(text) {
  return text.replace(/[\r\n\t\v\f\u2028\u2029]+/g, " ").trim();
}

/**
 * Why the text cannot be a status, or "" when it can. Counts characters (code points),
 * as the server does, not UTF-16 units.
 * @param {string} text
 */
export function statusProblem(text) {
  const length = [...cleanStatus(text)].length;
  return length > STATUS_MAX
    ? `a status message has at most ${STATUS_MAX} characters (this one has ${length})`
    : "";
}

/**
 * @param {unknown} state
 * @returns {Choice}
 */
export function asChoice(state) {
  return state === "away" || state === "busy" || state === "invisible" ? state : "online";
}

/**
 * How I show myself: what I chose, or "away" while an "online" me is idle.
 * @param {MyPresence} mine
 * @param {boolean} idle
 * @returns {{state: string, label: string}}
 */
export function shownSelf(mine, idle) {
  if (idle && mine.state === "online") {
    return { state: "away", label: "Away (idle)" };
  }
  return { state: mine.state, label: STATE_LABELS[mine.state] };
}

/**
 * The idle timeout from the page's query (`?idle=SECONDS`, for tests and the curious),
 * else `fallback` seconds.
 * @param {string} search location.search
 * @param {number} [fallback]
 * @returns {number} milliseconds
 */
export function idleTimeoutFrom(search, fallback = DEFAULT_IDLE_SECONDS) {
  const raw = new URLSearchParams(search).get("idle");
  const seconds = raw === null ? Number.NaN : Number(raw);
  const chosen =
    Number.isFinite(seconds) && seconds >= 1 ? Math.min(seconds, MAX_IDLE_SECONDS) : fallback;
  return chosen * 1000;
}

/**
 * @param {number} timeoutMs
 * @param {number} now
 * @returns {IdleTracker}
 */
export function createIdle(timeoutMs, now) {
  return { timeoutMs, lastActive: now, idle: false };
}

/**
 * Input, or the page became visible: not idle any more.
 * @param {IdleTracker} tracker
 * @param {number} now
 * @returns {{tracker: IdleTracker, changed: boolean}}
 */
export function noteActivity(tracker, now) {
  return { tracker: { ...tracker, lastActive: now, idle: false }, changed: tracker.idle };
}

/**
 * Called on a timer: idle once `timeoutMs` passed without activity.
 * @param {IdleTracker} tracker
 * @param {number} now
 * @returns {{tracker: IdleTracker, changed: boolean}}
 */
export function checkIdle(tracker, now) {
  const idle = now - tracker.lastActive >= tracker.timeoutMs;
  return { tracker: { ...tracker, idle }, changed: idle !== tracker.idle };
}
