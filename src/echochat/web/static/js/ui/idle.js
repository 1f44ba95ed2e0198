// @ts-check
/**
 * Feeds the page's input and visibility to the idle policy of state/presence.js and says
 * when the user becomes idle or comes back. A hidden page gets no input, so time spent in
 * another tab counts towards idleness; showing the page again counts as activity.
 */

import { checkIdle, createIdle, noteActivity } from "../state/presence.js";

const INPUT_EVENTS = ["pointerdown", "pointermove", "keydown", "wheel", "touchstart", "scroll"];
/** Input within this long after the last noted activity changes nothing: skip the work. */
const THROTTLE_MS = 1000;

/**
 * @param {number} timeoutMs
 * @param {(idle: boolean) => void} onChange
 * @returns {{readonly idle: boolean, stop: () => void}}
 */
export function watchIdle(timeoutMs, onChange) {
  let tracker = createIdle(timeoutMs, Date.now());
  const active = () => {
    if (document.visibilityState !== "visible") {
      return;
    }
    const now = Date.now();
    if (!tracker.idle && now - tracker.lastActive < THROTTLE_MS) {
      return;
    }
    const next = noteActivity(tracker, now);
    tracker = next.tracker;
    if (next.changed) {
      onChange(false);
    }
  };
  const check = () => {
    const next = checkIdle(tracker, Date.now());
    tracker = next.tracker;
    if (next.changed) {
      onChange(tracker.idle);
    }
  };
  for (const type of INPUT_EVENTS) {
    document.addEventListener(type, active, { capture: true, passive: true });
  }
  document.addEventListener("visibilitychange", active);
  window.addEventListener("focus", active);
  const timer = window.setInterval(check, Math.max(250, Math.min(15_000, timeoutMs / 4)));
  return {
    get idle() {
      return tracker.idle;
    },
    stop() {
      window.clearInterval(timer);
      for (const type of INPUT_EVENTS) {
        document.removeEventListener(type, active, { capture: true });
      }
      document.removeEventListener("visibilitychange", active);
      window.removeEventListener("focus", active);
    },
  };
}
