// @ts-check
/**
 * The Users tab: search (GET /admin/users), one user's details (GET /admin/users/{name}),
 * and what can be done to them (PATCH /admin/users/{name}: roles, ban with a reason,
 * unban, mute; POST .../logout: end every session). Refusals such as the server's
 * `last_admin` are shown in words next to the user.
 */

import { byId, el } from "/static/js/ui/dom.js";
import { problemText, setStatus } from "/static/js/ui/forms.js";
import * as net from "../net.js";
import { formatTime, listOf, standing } from "../state.js";

const PAGE = 20;

/** @param {string} word */
const capital = (word) => word.charAt(0).toUpperCase() + word.slice(1);
const ROLES = ["admin", "moderator"];

export class UsersTab {
  /** @param {{confirm: (q: {title: string, text: string, ok: string}) => Promise<boolean>}} deps */
  constructor({ confirm }) {
    this.confirm = confirm;
    this.q = "";
    this.offset = 0;
    /** @type {any} */
    this.current = null;
    this.list = byId("admin-user-list", HTMLElement);
    this.listStatus = byId("admin-users-status", HTMLElement);
    this.status = byId("admin-user-status", HTMLElement);
    this.prev = byId("admin-users-prev", HTMLButtonElement);
    this.next = byId("admin-users-next", HTMLButtonElement);
    this.pageText = byId("admin-users-page", HTMLElement);
    const search = byId("admin-user-search", HTMLFormElement);
    search.addEventListener("submit", (event) => {
      event.preventDefault();
      this.q = byId("admin-user-q", HTMLInputElement).value;
      this.offset = 0;
      this.load();
    });
    this.prev.addEventListener("click", () => {
      this.offset = Math.max(0, this.offset - PAGE);
      this.load();
    });
    this.next.addEventListener("click", () => {
      this.offset += PAGE;
      this.load();
    });
    this.bindActions();
  }

  async load() {
    setStatus(this.listStatus, "");
    this.list.setAttribute("aria-busy", "true");
    try {
      const answer = await net.users(this.q, PAGE, this.offset);
      const users = listOf(answer, "users");
      const total = typeof answer?.total === "number" ? answer.total : null;
      this.list.replaceChildren(...users.map((u) => this.item(u)));
      if (!users.length) {
        setStatus(this.listStatus, this.q ? "No user matches." : "No users yet.");
      }
      const last = this.offset + users.length;
      this.pageText.textContent = users.length
        ? `${this.offset + 1}–${last}${total !== null ? ` of ${total}` : ""}`
        : "";
      this.prev.disabled = this.offset === 0;
      this.next.disabled = total !== null ? last >= total : users.length < PAGE;
    } catch (error) {
      setStatus(this.listStatus, problemText(error), "error");
    } finally {
      this.list.removeAttribute("aria-busy");
    }
  }

  /** @param {any} user */
  item(user) {
    const state = standing(user, Date.now());
    const roles = (user.roles ?? []).filter((/** @type {string} */ r) => r !== "user");
    const button = el(
      "button",
      {
        className: "admin-list__item",
        attrs: { type: "button", "aria-pressed": String(this.current?.username === user.username) },
      },
      [
        el("span", { className: "admin-list__main" }, [
          el("span", { className: "admin-list__name", text: user.display_name || user.username }),
          el("span", { className: "admin-list__sub", text: user.username }),
        ]),
        ...roles.map((/** @type {string} */ r) =>
          el("span", { className: `admin-badge admin-badge--${r}`, text: capital(r) }),
        ),
        state.key === "active"
          ? ""
          : el("span", {
              className: `admin-badge admin-badge--${state.key}`,
              text: capital(state.key),
            }),
      ],
    );
    button.dataset.username = user.username;
    button.addEventListener("click", () => this.show(user.username));
    return el("li", {}, [button]);
  }

  /** @param {string} username */
  async show(username) {
    setStatus(this.status, "");
    try {
      const answer = await net.user(username);
      this.render(answer?.user ?? answer);
      // Under the list on a narrow panel: bring the details into view.
      byId("admin-user-name", HTMLElement).scrollIntoView({ block: "nearest" });
    } catch (error) {
      setStatus(this.listStatus, problemText(error), "error");
    }
  }

  /** @param {any} user */
  render(user) {
    this.current = user;
    byId("admin-user-none", HTMLElement).hidden = true;
    byId("admin-user", HTMLElement).hidden = false;
    for (const button of this.list.querySelectorAll("button[data-username]")) {
      const mine = /** @type {HTMLElement} */ (button).dataset.username === user.username;
      button.setAttribute("aria-pressed", String(mine));
    }
    byId("admin-user-name", HTMLElement).textContent =
      user.display_name && user.display_name !== user.username
        ? `${user.display_name} (${user.username})`
        : user.username;
    const state = standing(user, Date.now());
    const badge = byId("admin-user-standing", HTMLElement);
    badge.textContent = state.text;
    badge.className = `admin-badge admin-badge--${state.key}`;
    /** @type {[string, string][]} */
    const facts = [
      ["Email", user.email || "—"],
      ["Joined", user.created_at ? formatTime(Date.parse(user.created_at)) : "—"],
      ["Last seen", user.last_seen_at ? formatTime(Date.parse(user.last_seen_at)) : "—"],
      ["Sessions", typeof user.sessions === "number" ? `${user.sessions} signed in` : "—"],
    ];
    if (state.key === "banned" && user.ban_reason) {
      facts.push(["Ban reason", user.ban_reason]);
    }
    byId("admin-user-facts", HTMLElement).replaceChildren(
      ...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]),
    );
    const roles = new Set(user.roles ?? []);
    for (const box of byId("admin-roles-form", HTMLFormElement).querySelectorAll("input[name=role]")) {
      const input = /** @type {HTMLInputElement} */ (box);
      input.checked = roles.has(input.value);
    }
    const banned = state.key === "banned";
    byId("admin-ban-title", HTMLElement).textContent = banned ? "Banned" : "Ban";
    const reason = byId("admin-ban-reason", HTMLInputElement);
    reason.value = "";
    reason.closest(".field")?.toggleAttribute("hidden", banned);
    const submit = byId("admin-ban-submit", HTMLButtonElement);
    submit.textContent = banned ? "Unban user" : "Ban user";
    submit.classList.toggle("button--danger", !banned);
    byId("admin-unmute", HTMLButtonElement).disabled = state.key !== "muted";
  }

  /**
   * Run a change to the current user and show what happened.
   * @param {() => Promise<any>} change
   * @param {string} done
   */
  async act(change, done) {
    if (!this.current) {
      return;
    }
    const username = this.current.username;
    try {
      const answer = await change();
      setStatus(this.status, done, "success");
      if (answer && typeof answer === "object" && answer.username === username) {
        this.render(answer);
      } else {
        await this.show(username);
        setStatus(this.status, done, "success");
      }
      this.load();
    } catch (error) {
      setStatus(this.status, problemText(error), "error");
      this.status.focus();
    }
  }

  bindActions() {
    const who = () => this.current?.username ?? "";
    byId("admin-roles-form", HTMLFormElement).addEventListener("submit", (event) => {
      event.preventDefault();
      const form = /** @type {HTMLFormElement} */ (event.currentTarget);
      const roles = ROLES.filter((role) =>
        /** @type {HTMLInputElement | null} */ (form.querySelector(`input[value="${role}"]`))?.checked,
      );
      this.act(() => net.updateUser(who(), { roles }), `Saved the roles of ${who()}.`);
    });
    byId("admin-ban-form", HTMLFormElement).addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = who();
      if (standing(this.current ?? {}, Date.now()).key === "banned") {
        this.act(() => net.updateUser(name, { banned: false }), `Lifted the ban on ${name}.`);
        return;
      }
      const reason = byId("admin-ban-reason", HTMLInputElement).value.trim();
      const sure = await this.confirm({
        title: "Ban user",
        text:
          `Ban ${name}? Every session of theirs ends at once and they cannot sign in` +
          (reason ? `; they are told: “${reason}”.` : "."),
        ok: "Ban",
      });
      if (sure) {
        this.act(() => net.updateUser(name, { banned: true, ban_reason: reason }), `Banned ${name}.`);
      }
    });
    byId("admin-mute-form", HTMLFormElement).addEventListener("submit", (event) => {
      event.preventDefault();
      const minutes = Number(byId("admin-mute-minutes", HTMLSelectElement).value);
      this.act(() => net.updateUser(who(), { muted_minutes: minutes }), `Muted ${who()}.`);
    });
    byId("admin-unmute", HTMLButtonElement).addEventListener("click", () =>
      this.act(() => net.updateUser(who(), { muted_minutes: 0 }), `Lifted the mute on ${who()}.`),
    );
    byId("admin-force-logout", HTMLButtonElement).addEventListener("click", async () => {
      const name = who();
      const sure = await this.confirm({
        title: "Sign out everywhere",
        text: `End every session of ${name}? They must sign in again on each device.`,
        ok: "Sign out",
      });
      if (sure) {
        this.act(() => net.forceLogout(name), `Signed ${name} out everywhere.`);
      }
    });
  }
}
