// @ts-check
/**
 * The admin endpoints of the HTTP API (api/admin*.py, api/reports.py, api/rooms*.py), one
 * function each, through the page's own client (/static/js/net/api.js: CSRF, refresh).
 * Names go into paths encoded.
 */

import { api } from "/static/js/net/api.js";

const e = encodeURIComponent;

export const whoami = () => api("GET", "/admin/whoami");
export const stats = () => api("GET", "/admin/stats");

/**
 * @param {string} q
 * @param {number} limit
 * @param {number} offset
 */
export function users(q, limit, offset) {
  const query = new URLSearchParams({ limit: String(limit), offset: String(offset) });
  if (q.trim()) {
    query.set("q", q.trim());
  }
  return api("GET", `/admin/users?${query}`);
}

/** @param {string} username */
export const user = (username) => api("GET", `/admin/users/${e(username)}`);

/**
 * @param {string} username
 * @param {{banned?: boolean, ban_reason?: string, roles?: string[], muted_minutes?: number}} change
 */
export const updateUser = (username, change) =>
  api("PATCH", `/admin/users/${e(username)}`, change);

/** @param {string} username */
export const forceLogout = (username) => api("POST", `/admin/users/${e(username)}/logout`, {});

export const settings = () => api("GET", "/admin/settings");
/** @param {Record<string, unknown>} changes */
export const updateSettings = (changes) => api("PATCH", "/admin/settings", changes);

/** @param {string} query from state.auditQuery */
export const audit = (query) => api("GET", `/admin/audit${query}`);

/**
 * @param {string} status open | dismissed | actioned
 * @param {number} [limit]
 */
export function reports(status, limit) {
  const query = new URLSearchParams({ status });
  if (limit) {
    query.set("limit", String(limit));
  }
  return api("GET", `/admin/reports?${query}`);
}

/**
 * @param {number} id
 * @param {string} action dismiss | delete | mute | ban
 * @param {string} resolution the moderator's note
 * @param {number | null} [minutes] how long a mute lasts
 */
export const resolveReport = (id, action, resolution, minutes = null) =>
  api("POST", `/admin/reports/${id}/resolve`, {
    action,
    resolution,
    ...(minutes ? { minutes } : {}),
  });

export const categories = () => api("GET", "/admin/categories");
/** @param {{name: string}} body */
export const createCategory = (body) => api("POST", "/admin/categories", body);
/**
 * @param {number} id
 * @param {Record<string, unknown>} body
 */
export const updateCategory = (id, body) => api("PATCH", `/admin/categories/${id}`, body);
/** @param {number} id */
export const deleteCategory = (id) => api("DELETE", `/admin/categories/${id}`);

/** The public rooms, as everyone sees them (GET /rooms). */
export const rooms = () => api("GET", "/rooms");
/** @param {Record<string, unknown>} body */
export const createRoom = (body) => api("POST", "/admin/rooms", body);
/**
 * @param {number} id
 * @param {Record<string, unknown>} body
 */
export const updateRoom = (id, body) => api("PATCH", `/admin/rooms/${id}`, body);
/** @param {number} id */
export const deleteRoom = (id) => api("DELETE", `/admin/rooms/${id}`);
