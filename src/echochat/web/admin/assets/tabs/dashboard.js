// @ts-check
/**
 * The Dashboard tab: users online now, messages and sign-ups per day (GET /admin/stats),
 * and who the panel thinks you are and which database that was read from
 * (GET /admin/whoami), so a missing permission explains itself.
 */

import { byId } from "/static/js/ui/dom.js";
import { problemText, setStatus } from "/static/js/ui/forms.js";
import { renderBarChart } from "../charts.js";
import * as net from "../net.js";
import { normalizeStats, openCount } from "../state.js";

export class DashboardTab {
  /** @param {{showTab: (name: string) => void}} deps */
  constructor({ showTab }) {
    this.status = byId("admin-stats-status", HTMLElement);
    this.online = byId("admin-online", HTMLElement);
    this.messages = byId("admin-chart-messages", HTMLElement);
    this.signups = byId("admin-chart-signups", HTMLElement);
    this.who = byId("admin-whoami", HTMLElement);
    /** @type {Map<HTMLElement, ResizeObserver>} */
    this.observers = new Map();
    byId("admin-stats-refresh", HTMLButtonElement).addEventListener("click", () => this.load());
    // Moderators and admins: how many reports wait.
    this.openReports = document.getElementById("admin-open-reports");
    document
      .getElementById("admin-review-reports")
      ?.addEventListener("click", () => showTab("reports"));
  }

  async load() {
    setStatus(this.status, "");
    const [stats, me] = await Promise.allSettled([net.stats(), net.whoami()]);
    if (stats.status === "fulfilled") {
      const shown = normalizeStats(stats.value);
      this.online.textContent = String(shown.online);
      byId("admin-online-note", HTMLElement).textContent =
        shown.users === null
          ? "users with a live connection"
          : `users with a live connection, of ${shown.users} account${shown.users === 1 ? "" : "s"}`;
      this.chart(this.messages, shown.messages, "Messages per day");
      this.chart(this.signups, shown.signups, "Sign-ups per day");
    } else {
      setStatus(this.status, problemText(stats.reason), "error");
    }
    if (this.openReports) {
      try {
        const count = openCount(await net.reports("open", 1));
        this.openReports.textContent = count === null ? "?" : String(count);
        this.openReports.dataset.count = String(count ?? "");
      } catch {
        this.openReports.textContent = "?";
      }
    }
    if (me.status === "fulfilled") {
      const db = me.value?.database ?? {};
      const url = String(db.url ?? "");
      const name = String(db.name ?? "");
      const where = url.includes(name) || !name ? url : `${name} (${url})`;
      this.who.textContent = where
        ? `Your roles and permissions are read from the database ${where}.`
        : "";
      this.who.title = typeof me.value?.explanation === "string" ? me.value.explanation : "";
    }
  }

  /**
   * Draw a chart at the figure's width (and again when that changes).
   * @param {HTMLElement} figure
   * @param {import("../state.js").DayCount[]} series
   * @param {string} label
   */
  chart(figure, series, label) {
    const draw = () => {
      const width = Math.max(160, Math.floor(figure.clientWidth - 26));
      if (figure.dataset.width === String(width) && figure.querySelector("svg")) {
        return;
      }
      figure.dataset.width = String(width);
      figure.querySelector("svg")?.remove();
      figure.append(renderBarChart(series, label, width, 140));
    };
    delete figure.dataset.width;
    draw();
    this.observers.get(figure)?.disconnect();
    const observer = new ResizeObserver(() => {
      if (figure.isConnected && figure.clientWidth) {
        draw();
      }
    });
    observer.observe(figure);
    this.observers.set(figure, observer);
  }
}
