// @ts-check
/**
 * Reporting a user or a message to the moderators (templates/_report_dialog.html), and
 * telling the reporter what came of it.
 *
 * - A buddy's menu (ui/buddymenu.js) reports the user: `{"kind": "user", "username"}`.
 * - A message line in a PM window has a small "Report" button (ui/pmwindow.js); it sends a
 *   bubbling `echochat:report` DOM event with `{kind, username, messageId, text}` that
 *   {@link bindReports} catches, so the window needs no reference to this module's state.
 *   Private messages are end-to-end encrypted: the decrypted text goes to the server as
 *   `excerpt` only when the reporter ticks "Include the message text" (off by default).
 * - The server's `report.update` event (domain/events_admin.py) becomes a notice with the
 *   outcome sentence the server chose ({@link reportOutcome}).
 */

import { api } from "../net/api.js";
import { byId } from "./dom.js";
import { bindForm, setStatus } from "./forms.js";
import { openDialog } from "./modal.js";

/** The DOM event a message's Report button sends (it bubbles to the document). */
export const REPORT_EVENT = "echochat:report";
const EXCERPT_MAX = 1000;

/**
 * @typedef {object} ReportTarget
 * @property {"user" | "dm" | "room_message"} kind
 * @property {string} [username] the user reported, or the message's sender
 * @property {string} [name] how to call them (display name)
 * @property {number} [messageId]
 * @property {string} [text] the message's decrypted text (sent only if the box is ticked)
 */

/** @type {ReportTarget | null} */
let target = null;
/** @type {(message: string, tone?: "info" | "error" | "success") => void} */
let tell = () => {};

/**
 * The body of `POST /reports` for `target`, with the excerpt only when `include`.
 * @param {ReportTarget} about
 * @param {string} reason
 * @param {boolean} include
 */
export function reportBody(about, reason, include) {
  /** @type {Record<string, unknown>} */
  const body = { kind: about.kind, reason: reason.trim() };
  if (about.kind === "user") {
    body.username = about.username;
  } else {
    body.message_id = about.messageId;
  }
  if (include && about.kind !== "user" && about.text) {
    body.excerpt = about.text.slice(0, EXCERPT_MAX);
  }
  return body;
}

/**
 * The notice for a `report.update` event.
 * @param {{id?: number, status?: string, outcome?: string}} data
 */
export function reportOutcome(data) {
  const outcome = typeof data.outcome === "string" ? data.outcome.trim() : "";
  if (outcome) {
    return outcome; // one sentence the server chose per action ("...removed the message.")
  }
  return data.status === "dismissed"
    ? "A moderator reviewed your report and took no action."
    : "A moderator reviewed your report and acted on it.";
}

/**
 * Open the report dialog for a user or a message.
 * @param {ReportTarget} about
 */
export function openReport(about) {
  const dialog = byId("report-dialog", HTMLDialogElement);
  const form = byId("report-form", HTMLFormElement);
  target = about;
  form.reset();
  for (const box of form.querySelectorAll(".field__error")) {
    box.remove();
  }
  setStatus(byId("report-status", HTMLElement), "");
  const who = about.name || about.username || "this user";
  byId("report-title", HTMLElement).textContent =
    about.kind === "user" ? `Report ${who}` : "Report a message";
  byId("report-intro", HTMLElement).textContent =
    about.kind === "user"
      ? `Tell the moderators what ${who} did. They review every report.`
      : `Tell the moderators what is wrong with this message from ${who}.`;
  const excerptBox = byId("report-excerpt-box", HTMLElement);
  excerptBox.hidden = about.kind === "user" || !about.text;
  byId("report-include-hint", HTMLElement).textContent =
    about.kind === "dm"
      ? "Private messages are end-to-end encrypted: the moderators can only see the text " +
        "if you send it with your report."
      : "Sending the text shows the moderators exactly what you saw.";
  byId("report-quote", HTMLElement).textContent = about.text ?? "";
  openDialog(dialog, byId("report-reason", HTMLTextAreaElement));
}

/**
 * Wire the dialog's form and the Report buttons of message lines; `notify` shows the
 * outcome line in the buddy window.
 * @param {{notify: (message: string, tone?: "info" | "error" | "success") => void}} deps
 */
export function bindReports({ notify }) {
  tell = notify;
  const dialog = byId("report-dialog", HTMLDialogElement);
  const form = byId("report-form", HTMLFormElement);
  bindForm(
    form,
    async ({ reason, include }) => {
      if (!target) {
        return;
      }
      await api("POST", "/reports", reportBody(target, reason, include === "on"));
      dialog.close();
      tell("Thank you: your report was sent to the moderators.", "success");
    },
    {
      check: ({ reason }) =>
        reason.trim() ? [] : [{ field: "reason", message: "say briefly what is wrong" }],
      explain: (error) => (error.code === "rate_limited" ? null : { message: error.message }),
    },
  );
  document.addEventListener(REPORT_EVENT, (event) => {
    const detail = /** @type {CustomEvent<ReportTarget>} */ (event).detail;
    if (detail && typeof detail === "object") {
      openReport(detail);
    }
  });
}

/**
 * A `report.update` event arrived: tell the reporter.
 * @param {{id?: number, status?: string, outcome?: string}} data
 */
export function showReportUpdate(data) {
  tell(reportOutcome(data), "info");
}
