// @ts-check
/**
 * The Audit log tab: every admin and moderator action, newest first (GET /admin/audit),
 * filtered by action, actor and target, a page at a time ("Older" follows the `before`
 * cursor); "Export CSV" downloads the same filter as /api/v1/admin/audit.csv.
 */

import { API_PREFIX } from "/static/js/net/api.js";
import { byId, el } from "/static/js/ui/dom.js";
import { problemText, setStatus } from "/static/js/ui/forms.js";
import * as net from "../net.js";
import { auditPage, auditQuery, formatTime } from "../state.js";

const PAGE = 50;

export class AuditTab {
  constructor() {
    this.form = byId("admin-audit-form", HTMLFormElement);
    this.rows = byId("admin-audit-rows", HTMLElement);
    this.status = byId("admin-audit-status", HTMLElement);
    this.csv = byId("admin-audit-csv", HTMLAnchorElement);
    this.older = byId("admin-audit-older", HTMLButtonElement);
    this.newest = byId("admin-audit-newest", HTMLButtonElement);
    /** @type {string | number | null} */
    this.before = null;
    /** @type {string | number | null} */
    this.next = null;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.before = null;
      this.load();
    });
    this.older.addEventListener("click", () => {
      this.before = this.next;
      this.load();
    });
    this.newest.addEventListener("click", () => {
      this.before = null;
      this.load();
    });
  }

  filters() {
    const value = (/** @type {string} */ name) =>
      /** @type {HTMLInputElement} */ (this.form.elements.namedItem(name)).value;
    return { action: value("action"), actor: value("actor"), target: value("target") };
  }

  async load() {
    setStatus(this.status, "");
    const filters = this.filters();
    this.csv.href = `${API_PREFIX}/admin/audit.csv${auditQuery(filters)}`;
    try {
      const answer = await net.audit(auditQuery(filters, { before: this.before, limit: PAGE }));
      const { rows, next } = auditPage(answer, PAGE);
      this.next = next;
      this.rows.replaceChildren(...rows.map((row) => this.row(row)));
      if (!rows.length) {
        this.rows.append(
          el("tr", {}, [
            el("td", {
              className: "admin-table__empty",
              text: "Nothing logged matches.",
              attrs: { colspan: "6" },
            }),
          ]),
        );
      }
      this.older.disabled = next === null || next === undefined;
      this.newest.disabled = this.before === null;
    } catch (error) {
      setStatus(this.status, problemText(error), "error");
    }
  }

  /** @param {any} row */
  row(row) {
    const at = Date.parse(row.at ?? row.created_at ?? row.time ?? "");
    const target = [row.target_type, row.target].filter(Boolean).join(" ");
    const details =
      row.details && typeof row.details === "object" && Object.keys(row.details).length
        ? Object.entries(row.details)
            .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
            .join(", ")
        : "";
    const tr = el("tr", {}, [
      el("td", { className: "admin-table__time", text: Number.isFinite(at) ? formatTime(at) : "" }),
      el("td", { text: row.actor ?? "" }),
      el("td", {}, [el("code", { className: "admin-table__action", text: row.action ?? "" })]),
      el("td", { text: target }),
      el("td", { className: "admin-table__ip", text: row.ip ?? "" }),
      el("td", { className: "admin-table__details", text: details, attrs: { title: details } }),
    ]);
    tr.dataset.action = row.action ?? "";
    return tr;
  }
}
