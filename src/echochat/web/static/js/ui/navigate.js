// @ts-check
/** Where a page goes next: the `next` parameter of the sign-in page, and back to sign-in. */

/**
 * A same-origin path from an untrusted `next` value, or null. Only paths that start with
 * one "/" are accepted ("//host" and "/\host" are other hosts to a browser).
 * @param {string | null | undefined} raw
 * @param {string} origin the page's origin, e.g. location.origin
 * @returns {string | null}
 */
export function safeNext(raw, origin) {
  if (!raw || !raw.startsWith("/") || raw.startsWith("//") || raw.startsWith("/\\")) {
    return null;
  }
  if (/[\u0000-\u001f\u007f]/.test(raw)) {
    return null;
  }
  let url;
  try {
    url = new URL(raw, origin);
  } catch {
    return null;
  }
  if (url.origin !== origin) {
    return null;
  }
  return url.pathname + url.search + url.hash;
}

/** Where to go after signing in: `?next=` when it is safe, else the buddy list. */
export function afterSignIn() {
  const next = new URLSearchParams(window.location.search).get("next");
  return safeNext(next, window.location.origin) ?? "/chat";
}

let leaving = false;

/**
 * Go to `url`, once: when several things end the page at the same moment (the sign-out
 * button and the socket's `kicked` event), a second navigation would abort the first.
 * @param {string} url
 */
export function leave(url) {
  if (!leaving) {
    leaving = true;
    window.location.assign(url);
  }
}

/** The session is over: go to the sign-in page, coming back here afterwards. */
export function signInAgain() {
  const here = window.location.pathname + window.location.search;
  leave(`/login?next=${encodeURIComponent(here)}`);
}
