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
import { normalizeStats } from "../state.js";

export class DashboardTab {
  constructor() {
    this.status = byId("admin-stats-status", HTMLElement);
    this.online = byId("admin-online", HTMLElement);
    this.messages = byId("admin-chart-messages", HTMLElement);
    this.signups = byId("admin-chart-signups", HTMLElement);
    this.who = byId("admin-whoami", HTMLElement);
    byId("admin-stats-refresh", HTMLButtonElement).addEventListener("click", () => this.load());
  }

  async load() {
    setStatus(this.status, "");
    try {
      const stats = normalizeStats(await net.stats());
      this.online.textContent = String(stats.online);
      this.chart(this.messages, stats.messages, "Messages per day");
      this.chart(this.signups, stats.signups, "Sign-ups per day");
    } catch (error) {
      setStatus(this.status, problemText(error), "error");
    }
    try {
      const me = await net.whoami();
      const db = me.database ?? {};
      const where = [db.name, db.url].filter(Boolean).join(" · ");
      this.who.textContent = where ? `Roles and permissions read from ${where}.` : "";
    } catch {
      this.who.textContent = "";
    }
  }

  /**
   * @param {HTMLElement} figure
   * @param {import("../state.js").DayCount[]} series
   * @param {string} label
   */
  chart(figure, series, label) {
    figure.querySelector("svg")?.remove();
    figure.append(renderBarChart(series, label));
  }
}
