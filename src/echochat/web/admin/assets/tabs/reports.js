// @ts-check
/**
 * The Reports tab: the queue (GET /admin/reports?status=), filtered by status and kind, and
 * for each open report a resolution note and the actions (POST /admin/reports/{id}/resolve
 * with dismiss, delete the message, mute or ban the reported user). The reporter is told
 * the outcome by the server (`report.update`); the note stays with the moderators. A new or
 * resolved report reloads the list while it is showing (panel.js, `refreshLive`).
 */

import { byId, el } from "/static/js/ui/dom.js";
import { problemText, setStatus } from "/static/js/ui/forms.js";
import * as net from "../net.js";
import { formatTime, listOf, reportActions, reportTarget } from "../state.js";

const MUTES = [
  [15, "15 min"],
  [60, "1 hour"],
  [1440, "1 day"],
  [10080, "1 week"],
];
const KINDS = { user: "User", dm: "Private message", room_message: "Room message" };

export class ReportsTab {
  constructor() {
    this.list = byId("admin-report-list", HTMLElement);
    this.status = byId("admin-reports-status", HTMLElement);
    this.empty = byId("admin-reports-empty", HTMLElement);
    this.filter = byId("admin-report-filter", HTMLSelectElement);
    this.kind = byId("admin-report-kind", HTMLSelectElement);
    this.filter.addEventListener("change", () => this.load());
    this.kind.addEventListener("change", () => this.load());
    byId("admin-reports-refresh", HTMLButtonElement).addEventListener("click", () => this.load());
    this.stale = false; // the "queue has changed" notice is showing
    this.resolving = 0; // resolutions in flight (each reloads the list when answered)
  }

  async load() {
    try {
      const all = listOf(await net.reports(this.filter.value), "reports");
      const shown = this.kind.value ? all.filter((r) => r.kind === this.kind.value) : all;
      this.list.replaceChildren(...shown.map((r) => this.item(r)));
      this.empty.hidden = shown.length > 0;
      this.empty.textContent =
        this.filter.value === "open" ? "Nothing to review. 🎉" : "No reports here.";
      if (this.stale) {
        this.stale = false;
        setStatus(this.status, "");
      }
    } catch (error) {
      setStatus(this.status, problemText(error), "error");
    }
  }

  /**
   * The queue changed (report.new / report.resolved while this tab is showing): reload,
   * unless the moderator is writing a note or has focus in the list, which a reload would
   * throw away; then only say so (Refresh reloads).
   */
  async refreshLive() {
    if (this.resolving > 0) {
      return; // its own reload follows
    }
    const notes = [...this.list.querySelectorAll(".admin-report__note")];
    const busy =
      this.list.contains(document.activeElement) ||
      notes.some((note) => note instanceof HTMLInputElement && note.value.trim() !== "");
    if (busy) {
      setStatus(this.status, "The queue has changed: Refresh to see it.", "info");
      this.stale = true;
      return;
    }
    await this.load();
  }

  /** @param {any} report */
  item(report) {
    const target = reportTarget(report);
    const created = report.created_at ? formatTime(Date.parse(report.created_at)) : "";
    const head = el("div", { className: "admin-report__head" }, [
      el("span", {
        className: `admin-badge admin-badge--${report.kind}`,
        text: KINDS[/** @type {keyof typeof KINDS} */ (report.kind)] ?? report.kind,
      }),
      el("span", { className: "admin-report__who" }, [
        el("b", { text: target || "?" }),
        document.createTextNode(` reported by ${report.reporter ?? "?"}`),
      ]),
      el("time", { className: "admin-report__time", text: created }),
    ]);
    const body = el("div", { className: "admin-report__body" }, [
      el("p", { className: "admin-report__reason", text: report.reason ?? "" }),
    ]);
    if (report.excerpt) {
      body.append(el("blockquote", { className: "admin-report__excerpt", text: report.excerpt }));
      if (report.kind === "dm") {
        body.append(
          el("p", {
            className: "admin-report__none",
            text: "As the reporter copied it: a private message is encrypted, so it cannot be checked.",
          }),
        );
      } else if (report.excerpt_matches !== null && report.excerpt_matches !== undefined) {
        body.append(
          el("p", {
            className: "admin-report__none",
            text: report.excerpt_matches
              ? "The stored message contains this text."
              : "The stored message does NOT contain this text.",
          }),
        );
      }
    } else if (report.kind !== "user") {
      body.append(
        el("p", {
          className: "admin-report__none",
          text: "The reporter did not include the message text.",
        }),
      );
    }
    if (report.message && report.message.found === false) {
      body.append(el("p", { className: "admin-report__none", text: "The message has been deleted." }));
    }
    const item = el("li", { className: "admin-report" }, [head, body]);
    item.dataset.report = String(report.id);
    item.dataset.status = report.status ?? "";
    if ((report.status ?? "open") === "open") {
      item.append(this.resolveForm(report));
    } else {
      const how = [report.action ?? report.status, report.resolution].filter(Boolean).join(": ");
      item.append(el("p", { className: "admin-report__done", text: `Resolved — ${how}` }));
    }
    return item;
  }

  /** @param {any} report */
  resolveForm(report) {
    const noteId = `admin-report-note-${report.id}`;
    const note = el("input", {
      className: "field__input admin-report__note",
      attrs: {
        id: noteId,
        type: "text",
        maxlength: "500",
        autocomplete: "off",
        placeholder: "Resolution note (for the moderators)",
      },
    });
    const minutes = el(
      "select",
      {
        className: "field__input field__select admin-report__minutes",
        attrs: { "aria-label": "Mute for", title: "How long a mute lasts" },
      },
      MUTES.map(([value, text]) => el("option", { text, attrs: { value: String(value) } })),
    );
    minutes.value = "60";
    const buttons = reportActions(report).flatMap(({ action, label, danger }) => {
      const button = el("button", {
        className: `button button--small${danger ? " button--danger" : ""}`,
        text: label,
        attrs: { type: "button" },
      });
      button.dataset.action = action;
      button.addEventListener("click", () =>
        this.resolve(report, action, note.value, action === "mute" ? Number(minutes.value) : null),
      );
      return action === "mute"
        ? [el("span", { className: "admin-report__mute" }, [button, minutes])]
        : [button];
    });
    return el("div", { className: "admin-report__actions" }, [
      el("label", { className: "visually-hidden", text: "Resolution note", attrs: { for: noteId } }),
      note,
      ...buttons,
    ]);
  }

  /**
   * @param {any} report
   * @param {string} action
   * @param {string} note
   * @param {number | null} minutes for a mute
   */
  async resolve(report, action, note, minutes) {
    this.resolving += 1;
    try {
      await net.resolveReport(report.id, action, note.trim(), minutes);
      this.stale = false;
      setStatus(this.status, `Report #${report.id} resolved (${action}).`, "success");
      await this.load();
    } catch (error) {
      setStatus(this.status, problemText(error), "error");
      this.status.focus();
    } finally {
      this.resolving -= 1;
    }
  }
}
