// @ts-check
/**
 * The browser's one way to talk to the HTTP API (ARCHITECTURE section 4).
 *
 * - JSON in and out, cookies of this origin only (`credentials: "same-origin"`).
 * - Unsafe methods echo the readable `echochat_csrf` cookie in `X-CSRF-Token`, read fresh
 *   for every request (a sign-in, a refresh or another tab may have replaced it). On 403
 *   `csrf_missing`/`csrf_invalid` it asks `GET /auth/csrf` for a fresh token once and retries.
 * - On 401 `token_expired` it rotates the session with `POST /auth/refresh` and retries.
 *   Concurrent callers share one refresh; a 409 `refresh_race` means another tab rotated
 *   the shared cookies a moment ago, so the request is simply retried (and may refresh once
 *   more if the winner's cookies had not arrived yet).
 * - Any other non-2xx answer throws an {@link ApiError}.
 */

export const API_PREFIX = "/api/v1";
const CSRF_COOKIE = "echochat_csrf";
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const MAX_REFRESHES = 2;

/** @typedef {{field: string, message: string}} FieldError */

/** An API refusal or a network failure (status 0). */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status; 0 when the server could not be reached
   * @param {string} code stable machine-readable code, e.g. `bad_credentials`
   * @param {string} message for people, from the server
   * @param {{retryAfter?: number | null, fields?: FieldError[], details?: Record<string, unknown>}} [extra]
   */
  constructor(status, code, message, extra = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    /** Seconds to wait before trying again (429), or null. */
    this.retryAfter = extra.retryAfter ?? null;
    /** Fields the error is about: from `fields[]` (422) or `details.field`. */
    this.fields = extra.fields ?? [];
    this.details = extra.details ?? {};
  }
}

/**
 * The value of a cookie readable by scripts, or null.
 * @param {string} name
 * @returns {string | null}
 */
export function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      return part.slice(eq + 1).trim();
    }
  }
  return null;
}

/**
 * @param {string} method
 * @param {string} path below /api/v1, e.g. "/auth/login"
 * @param {unknown} [body]
 * @returns {Promise<Response>}
 */
async function send(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  if (UNSAFE.has(method)) {
    const token = readCookie(CSRF_COOKIE);
    if (token) {
      headers["X-CSRF-Token"] = token;
    }
  }
  try {
    return await fetch(API_PREFIX + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(
      0,
      "network_error",
      "could not reach the server; check your connection and try again",
    );
  }
}

/**
 * Turn an error response (`{"error": {"code", "message", ...}}`) into an ApiError.
 * @param {Response} response
 * @returns {Promise<ApiError>}
 */
async function toError(response) {
  /** @type {any} */
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && typeof body.error === "object" && body.error ? body.error : {};
  /** @type {Record<string, unknown>} */
  const details = error.details && typeof error.details === "object" ? error.details : {};
  const message = typeof error.message === "string" ? error.message : response.statusText;
  /** @type {FieldError[]} */
  const fields = Array.isArray(error.fields)
    ? error.fields
        .filter((/** @type {any} */ f) => f && typeof f.field === "string")
        .map((/** @type {any} */ f) => ({ field: f.field, message: String(f.message ?? "") }))
    : [];
  if (fields.length === 0 && typeof details.field === "string") {
    fields.push({ field: details.field, message });
  }
  const header = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  const retryAfter =
    header > 0 ? header : typeof details.retry_after === "number" ? details.retry_after : null;
  const code = typeof error.code === "string" ? error.code : `http_${response.status}`;
  return new ApiError(response.status, code, message || "request failed", {
    retryAfter,
    fields,
    details,
  });
}

/**
 * @param {Response} response
 * @returns {Promise<string>} the error code of a failed response ("" when there is none)
 */
async function codeOf(response) {
  return (await toError(response.clone())).code;
}

/**
 * Send once, and once more with a fresh CSRF token if the server refused the token.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 */
async function exchange(method, path, body) {
  const response = await send(method, path, body);
  if (response.status !== 403 || !UNSAFE.has(method)) {
    return response;
  }
  const code = await codeOf(response);
  if (code !== "csrf_missing" && code !== "csrf_invalid") {
    return response;
  }
  await send("GET", "/auth/csrf"); // sets a fresh echochat_csrf cookie
  return send(method, path, body);
}

/** @type {Promise<void> | null} */
let refreshing = null;

/**
 * Rotate the session's tokens (the refresh cookie is sent by the browser). Callers that
 * arrive while a refresh runs share it.
 * @returns {Promise<void>}
 */
export function refreshSession() {
  refreshing ??= (async () => {
    const response = await exchange("POST", "/auth/refresh", {});
    if (response.ok) {
      return;
    }
    const error = await toError(response);
    if (error.code !== "refresh_race") {
      throw error;
    }
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/**
 * Call the API.
 * @param {"GET" | "POST" | "PUT" | "PATCH" | "DELETE"} method
 * @param {string} path below /api/v1, e.g. "/auth/sessions"
 * @param {unknown} [body] sent as JSON
 * @returns {Promise<any>} the parsed JSON answer, or null for an empty one
 * @throws {ApiError}
 */
export async function api(method, path, body) {
  let response = await exchange(method, path, body);
  for (let refreshes = 0; response.status === 401 && refreshes < MAX_REFRESHES; refreshes++) {
    if ((await codeOf(response)) !== "token_expired") {
      break;
    }
    await refreshSession();
    response = await exchange(method, path, body);
  }
  if (!response.ok) {
    throw await toError(response);
  }
  const type = response.headers.get("Content-Type") ?? "";
  if (response.status === 204 || !type.includes("json")) {
    return null;
  }
  return response.json();
}
