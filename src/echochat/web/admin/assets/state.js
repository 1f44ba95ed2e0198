// @ts-check
/**
 * The admin panel's plain data and rules, no DOM: which tabs a user may see, the shapes
 * of the server's answers made regular, the settings form's checks and changes, the audit
 * log's queries, a chart's geometry. The ui modules (panel.js, frame.js, tabs/*.js) render
 * what these functions return. Everything here can be run on its own in a browser.
 */

/** @typedef {"dashboard" | "users" | "settings" | "rooms" | "reports" | "audit"} TabName */

/** The panel's tabs in order, each with the permission it needs (domain/roles.py). */
export const TABS = /** @type {const} */ ([
  { name: "dashboard", label: "Dashboard", permission: "admin:basic" },
  { name: "users", label: "Users", permission: "users:manage" },
  { name: "settings", label: "Settings", permission: "settings:manage" },
  { name: "rooms", label: "Rooms", permission: "rooms:manage" },
  { name: "reports", label: "Reports", permission: "reports:review" },
  { name: "audit", label: "Audit log", permission: "audit:read" },
]);

/**
 * The tabs a holder of `permissions` may open.
 * @param {Iterable<string>} permissions
 * @returns {TabName[]}
 */
export function visibleTabs(permissions) {
  const held = new Set(permissions);
  return TABS.filter((tab) => held.has(tab.permission)).map((tab) => tab.name);
}

// --- the dashboard ------------------------------------------------------------------------------

/** @typedef {{day: string, count: number}} DayCount */
/** @typedef {{online: number, messages: DayCount[], signups: DayCount[]}} Stats */

/**
 * A day series from `[{day, count}]`, `[{date, n}]`, `[["2026-12-01", 3]]` or
 * `{"2026-12-01": 3}`, sorted by day.
 * @param {unknown} raw
 * @returns {DayCount[]}
 */
export function daySeries(raw) {
  /** @type {DayCount[]} */
  const out = [];
  const push = (/** @type {unknown} */ day, /** @type {unknown} */ count) => {
    if (typeof day === "string" && Number.isFinite(Number(count))) {
      out.push({ day: day.slice(0, 10), count: Number(count) });
    }
  };
  if (Array.isArray(raw)) {
    for (const item of raw) {
      if (Array.isArray(item)) {
        push(item[0], item[1]);
      } else if (item && typeof item === "object") {
        const row = /** @type {Record<string, unknown>} */ (item);
        push(row.day ?? row.date, row.count ?? row.n ?? row.value);
      }
    }
  } else if (raw && typeof raw === "object") {
    for (const [day, count] of Object.entries(raw)) {
      push(day, count);
    }
  }
  return out.sort((a, b) => a.day.localeCompare(b.day));
}

/**
 * The dashboard's numbers from `GET /admin/stats`: `{online_users, users_total, days: [{day,
 * dms, room_messages, signups}]}` (messages per day are DMs and room messages together).
 * @param {any} raw
 * @returns {Stats & {users: number | null}}
 */
export function normalizeStats(raw) {
  const data = raw && typeof raw === "object" ? raw : {};
  const online = Number(data.online_users ?? data.online_now ?? data.online ?? 0);
  const users = Number.isFinite(Number(data.users_total)) ? Number(data.users_total) : null;
  if (Array.isArray(data.days)) {
    const days = data.days.filter((/** @type {any} */ d) => d && typeof d.day === "string");
    return {
      online: Number.isFinite(online) ? online : 0,
      users,
      messages: daySeries(
        days.map((/** @type {any} */ d) => ({
          day: d.day,
          count: Number(d.dms ?? 0) + Number(d.room_messages ?? 0) + Number(d.messages ?? 0),
        })),
      ),
      signups: daySeries(days.map((/** @type {any} */ d) => ({ day: d.day, count: d.signups ?? 0 }))),
    };
  }
  return {
    online: Number.isFinite(online) ? online : 0,
    users,
    messages: daySeries(data.messages_per_day ?? data.messages),
    signups: daySeries(data.signups_per_day ?? data.signups),
  };
}

/**
 * A round step for an axis that reaches `max` in about `ticks` steps (1, 2, 5 x 10^n).
 * @param {number} max
 * @param {number} [ticks]
 */
export function niceStep(max, ticks = 4) {
  if (!(max > 0)) {
    return 1;
  }
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  return Math.max(1, step);
}

/**
 * @typedef {object} BarChart
 * @property {{x: number, y: number, w: number, h: number, day: string, count: number}[]} bars
 * @property {{y: number, value: number}[]} ticks horizontal grid lines
 * @property {{x: number, text: string}[]} labels day labels under some bars
 * @property {number} top the axis' maximum
 */

/**
 * The geometry of a bar chart of `series` in a `width` x `height` box (SVG user units),
 * leaving `left` for the axis' numbers and `bottom` for the day labels.
 * @param {DayCount[]} series
 * @param {{width: number, height: number, left?: number, bottom?: number, top?: number}} box
 * @returns {BarChart}
 */
export function barChart(series, { width, height, left = 32, bottom = 18, top: pad = 6 }) {
  const max = Math.max(0, ...series.map((d) => d.count));
  const step = niceStep(max);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const plotW = width - left - 4;
  const plotH = height - bottom - pad;
  const slot = series.length ? plotW / series.length : plotW;
  const gap = Math.min(6, slot * 0.25);
  const bars = series.map((d, i) => {
    const h = top ? (d.count / top) * plotH : 0;
    return {
      x: left + i * slot + gap / 2,
      y: pad + plotH - h,
      w: Math.max(1, slot - gap),
      h,
      day: d.day,
      count: d.count,
    };
  });
  const ticks = [];
  for (let value = 0; value <= top; value += step) {
    ticks.push({ y: pad + plotH - (value / top) * plotH, value });
  }
  // A day label needs about 46 units ("Nov 27" at 10-11 px): fewer labels on a narrow chart.
  const fit = Math.max(1, Math.floor(plotW / 46));
  const every = Math.max(1, Math.ceil(series.length / fit));
  const labels = series
    .map((d, i) => ({ i, d }))
    .filter(({ i }) => (series.length - 1 - i) % every === 0)
    .map(({ i, d }) => ({ x: left + i * slot + slot / 2, text: shortDay(d.day) }));
  return { bars, ticks, labels, top };
}

/**
 * "2026-12-01" -> "Dec 1" (in English, like the rest of the panel).
 * @param {string} day
 */
export function shortDay(day) {
  const [y, m, d] = day.split("-").map(Number);
  if (!y || !m || !d) {
    return day;
  }
  const month = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ")[m - 1] ?? "";
  return `${month} ${d}`;
}

// --- the settings form ---------------------------------------------------------------------------

/**
 * @typedef {object} SettingField
 * @property {string} name the setting's key
 * @property {"bool" | "int" | "rate" | "choice" | "secret"} kind
 * @property {number} [min]
 * @property {number} [max]
 */

/** The settings the panel edits, as the form names them (templates/_admin_panel.html). */
export const SETTING_FIELDS = /** @type {SettingField[]} */ ([
  { name: "registration_open", kind: "bool" },
  { name: "email_required", kind: "bool" },
  { name: "upload_max_bytes", kind: "int", min: 0 },
  { name: "voice_max_room_peers", kind: "int", min: 0 },
  { name: "room_capacity", kind: "int", min: 1 },
  { name: "message_retention_days", kind: "int", min: 0 },
  { name: "gif_provider", kind: "choice" },
  { name: "gif_api_key", kind: "secret" },
  { name: "rate_limit_dm_account", kind: "rate" },
  { name: "rate_limit_room_account", kind: "rate" },
  { name: "rate_limit_room_invite", kind: "rate" },
  { name: "rate_limit_report_account", kind: "rate" },
  { name: "rate_limit_register_ip", kind: "rate" },
  { name: "rate_limit_login_ip", kind: "rate" },
]);

/** "30/minute", "10 per hour", "5/second;100/day": what the server's rate parser reads. */
const ONE_RATE = String.raw`\d+\s*(?:\/|per)\s*(?:\d+\s*)?[a-z]+`;
const RATE = new RegExp(String.raw`^${ONE_RATE}(?:\s*[;,]\s*${ONE_RATE})*$`, "iu");

/**
 * @typedef {object} SettingValue
 * @property {unknown} value
 * @property {string} source where it comes from: "admin" (changed here) or "config"
 * @property {boolean} set for a secret: whether one is set (its value is never sent)
 * @property {SettingField["kind"] | ""} kind as the server describes it ("" if it does not)
 * @property {string} description
 * @property {number | null} min
 * @property {number | null} max
 * @property {string[] | null} choices
 */

/**
 * The settings from `GET /admin/settings` by name: `{"settings": [{name, kind, value, is_set,
 * source, description, minimum, maximum, choices}]}` (also `{name: {value}}` or `{name: value}`).
 * @param {any} raw
 * @returns {Record<string, SettingValue>}
 */
export function normalizeSettings(raw) {
  const body = raw && typeof raw === "object" && raw.settings ? raw.settings : raw;
  /** @type {[string, any][]} */
  const pairs = Array.isArray(body)
    ? body.filter((s) => s && typeof s.name === "string").map((s) => [s.name, s])
    : Object.entries(body && typeof body === "object" ? body : {});
  /** @type {Record<string, SettingValue>} */
  const out = {};
  const num = (/** @type {unknown} */ v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  for (const [name, entry] of pairs) {
    const described = entry !== null && typeof entry === "object" && "value" in entry;
    const value = described ? entry.value : entry;
    const isSet = described ? (entry.is_set ?? entry.set) : undefined;
    out[name] = {
      value,
      source: described ? String(entry.source ?? entry.provenance ?? "") : "",
      set: typeof isSet === "boolean" ? isSet : Boolean(value),
      kind: described && typeof entry.kind === "string" ? entry.kind : "",
      description: described && typeof entry.description === "string" ? entry.description : "",
      min: described ? num(entry.minimum) : null,
      max: described ? num(entry.maximum) : null,
      choices: described && Array.isArray(entry.choices) ? entry.choices.map(String) : null,
    };
  }
  return out;
}

/**
 * The fields of the form for these settings: the known ones (SETTING_FIELDS) with the
 * server's kind and limits where it gives them, then any other setting it offers.
 * @param {Record<string, SettingValue>} current
 * @returns {SettingField[]}
 */
export function settingFields(current) {
  const known = new Map(SETTING_FIELDS.map((f) => [f.name, f]));
  return Object.entries(current).map(([name, setting]) => {
    const base = known.get(name);
    return {
      name,
      kind: setting.kind || base?.kind || "choice",
      min: setting.min ?? base?.min,
      max: setting.max ?? undefined,
    };
  });
}

/**
 * "rate_limit_dm_account" -> "Rate limit dm account" (for settings the form has no label for).
 * @param {string} name
 */
export function settingLabel(name) {
  const words = name.replace(/^rate_limit_/u, "").split("_").join(" ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/**
 * What the form changes, checked: `{changes, problems}`. Values come from the form as text
 * ("on" for a ticked box); a secret left empty keeps the stored one.
 * @param {Record<string, SettingValue>} current
 * @param {Record<string, string>} values the form's values (unticked boxes are absent)
 * @param {SettingField[]} [fields] default: {@link settingFields} of `current`
 * @returns {{changes: Record<string, unknown>, problems: {field: string, message: string}[]}}
 */
export function settingsChanges(current, values, fields = settingFields(current)) {
  /** @type {Record<string, unknown>} */
  const changes = {};
  const problems = [];
  for (const field of fields) {
    if (!(field.name in current)) {
      continue; // this server does not offer it
    }
    const before = current[field.name].value;
    const text = (values[field.name] ?? "").trim();
    if (field.kind === "bool") {
      const ticked = field.name in values;
      if (ticked !== Boolean(before)) {
        changes[field.name] = ticked;
      }
    } else if (field.kind === "int") {
      if (!/^\d+$/u.test(text)) {
        problems.push({ field: field.name, message: "enter a whole number" });
        continue;
      }
      const number = Number(text);
      if (field.min !== undefined && field.min !== null && number < field.min) {
        problems.push({ field: field.name, message: `enter ${field.min} or more` });
      } else if (field.max !== undefined && field.max !== null && number > field.max) {
        problems.push({ field: field.name, message: `enter ${field.max} or less` });
      } else if (number !== Number(before)) {
        changes[field.name] = number;
      }
    } else if (field.kind === "rate") {
      if (!RATE.test(text)) {
        problems.push({ field: field.name, message: "write it as a count per period, e.g. 30/minute" });
      } else if (text.replace(/\s+/gu, "") !== String(before ?? "").replace(/\s+/gu, "")) {
        changes[field.name] = text;
      }
    } else if (field.kind === "secret") {
      if (text) {
        changes[field.name] = text;
      }
    } else if (text !== String(before ?? "")) {
      changes[field.name] = text;
    }
  }
  return { changes, problems };
}

/**
 * A byte count in words: 10485760 -> "10 MiB".
 * @param {number} bytes
 */
export function bytesInWords(bytes) {
  if (!Number.isFinite(bytes) || bytes <= 0) {
    return bytes === 0 ? "no uploads" : "";
  }
  const units = ["bytes", "KiB", "MiB", "GiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

// --- users ---------------------------------------------------------------------------------------

/**
 * What to show about a user's standing: "Banned", "Muted until 14:05", "Active".
 * @param {{banned?: boolean, banned_at?: string | null, muted_until?: string | null}} user
 * @param {number} now
 */
export function standing(user, now) {
  if (user.banned || user.banned_at) {
    return { key: "banned", text: "Banned" };
  }
  const until = user.muted_until ? Date.parse(user.muted_until) : NaN;
  if (Number.isFinite(until) && until > now) {
    return { key: "muted", text: `Muted until ${formatTime(until, now)}` };
  }
  return { key: "active", text: "Active" };
}

/**
 * A time, with its date when it is not today.
 * @param {number} time
 * @param {number} now
 */
export function formatTime(time, now = Date.now()) {
  const when = new Date(time);
  const sameDay = new Date(now).toDateString() === when.toDateString();
  const clock = when.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  return sameDay ? clock : `${when.toLocaleDateString(undefined, { dateStyle: "medium" })} ${clock}`;
}

// --- the audit log -------------------------------------------------------------------------------

/**
 * The query string of an audit request: the filters that are set, and `before` (paging).
 * @param {{action?: string, actor?: string, target?: string}} filters
 * @param {{before?: number | string | null, limit?: number}} [page]
 */
export function auditQuery(filters, page = {}) {
  const query = new URLSearchParams();
  for (const key of /** @type {const} */ (["action", "actor", "target"])) {
    const value = (filters[key] ?? "").trim();
    if (value) {
      query.set(key, value);
    }
  }
  if (page.before !== undefined && page.before !== null && page.before !== "") {
    query.set("before", String(page.before));
  }
  if (page.limit) {
    query.set("limit", String(page.limit));
  }
  const text = query.toString();
  return text ? `?${text}` : "";
}

/**
 * Rows and the cursor of the next (older) page from `GET /admin/audit`.
 * @param {any} raw `{"entries"|"items"|"rows": [...], "next_before"?}` or a plain list
 * @param {number} limit the page size asked for
 */
export function auditPage(raw, limit) {
  const rows = Array.isArray(raw) ? raw : (raw?.entries ?? raw?.items ?? raw?.rows ?? []);
  const last = rows.length ? rows[rows.length - 1] : null;
  let next = raw && !Array.isArray(raw) ? (raw.next_before ?? raw.before ?? null) : null;
  if (next === null && rows.length >= limit && last && last.id !== undefined) {
    next = last.id;
  }
  return { rows: /** @type {any[]} */ (rows), next };
}

/**
 * The items of a list answer: `[...]` or `{"items"|"users"|...: [...]}`.
 * @param {any} raw
 * @param {string[]} keys
 * @returns {any[]}
 */
export function listOf(raw, ...keys) {
  if (Array.isArray(raw)) {
    return raw;
  }
  for (const key of [...keys, "items"]) {
    if (raw && Array.isArray(raw[key])) {
      return raw[key];
    }
  }
  return [];
}

// --- reports -------------------------------------------------------------------------------------

/**
 * How many reports are open in all, from a queue answer (GET /admin/reports: `open`).
 * @param {any} raw
 * @returns {number | null}
 */
export function openCount(raw) {
  const open = raw?.open;
  return Number.isInteger(open) && open >= 0 ? open : null;
}

/**
 * Who or what a report is about, in words.
 * @param {any} report a queue entry: `username` (the reported user), `message` ({sender, room_name})
 */
export function reportTarget(report) {
  const user = report.username ?? report.message?.sender ?? "";
  const name =
    report.display_name && report.display_name !== user
      ? `${report.display_name} (${user})`
      : user;
  if (report.kind === "user") {
    return name;
  }
  const room = report.message?.room_name;
  const where = report.kind === "room_message" && room ? ` in ${room}` : "";
  return `${name ? `A message from ${name}` : "A message"}${where}`;
}

/**
 * The actions a report offers: dismiss, delete the message (message reports), mute, ban.
 * @param {{kind: string}} report
 * @returns {{action: string, label: string, danger: boolean}[]}
 */
export function reportActions(report) {
  return [
    { action: "dismiss", label: "Dismiss", danger: false },
    ...(report.kind === "user" ? [] : [{ action: "delete", label: "Delete message", danger: true }]),
    { action: "mute", label: "Mute user", danger: false },
    { action: "ban", label: "Ban user", danger: true },
  ];
}
