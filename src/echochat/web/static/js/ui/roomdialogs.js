// @ts-check
/**
 * The rooms' dialogs (markup in templates/_rooms.html `room_dialogs`): the room browser
 * (categories on the left, the public rooms of one with their member and online counts,
 * search by name, Join), a new private group, invite a buddy, ban a member. DOM only: the
 * work is done by state/rooms.js and net/rooms.js.
 *
 * The browser's counts are live: fetched again every few seconds while it is open.
 */

import { ApiError } from "../net/api.js";
import * as net from "../net/rooms.js";
import { byId, el } from "./dom.js";
import { bindForm, setStatus } from "./forms.js";
import { openDialog } from "./modal.js";

/** @typedef {import("../state/rooms.js").Rooms} Rooms */
/** @typedef {import("../state/buddies.js").BuddyState} BuddyState */
/** @typedef {import("../state/store.js").Store<BuddyState>} BuddyStore */

const LIVE_COUNTS_MS = 5000;
const SEARCH_DELAY_MS = 250;

/** Refusals in words. */
const WHY = {
  room_full: "this room is full right now; try again later or pick another",
  banned_from_room: "you are banned from this room",
  invite_only: "this is a private group: you need an invitation",
  user_not_found: "there is no user with that name",
  already_member: "they are in the group already",
  already_invited: "they have an invitation waiting already",
  not_a_buddy: "you can only invite your buddies",
  group_full: "the group is full",
};

/** @param {unknown} error */
export function explain(error) {
  if (error instanceof ApiError) {
    return WHY[/** @type {keyof typeof WHY} */ (error.code)] ?? error.message;
  }
  return String(/** @type {any} */ (error)?.message ?? error);
}

export class RoomDialogs {
  /**
   * @param {{rooms: Rooms, store: BuddyStore, me: string, open: (id: number) => void,
   *   say: (message: string, tone?: "info" | "error" | "success") => void}} deps
   */
  constructor({ rooms, store, me, open, say }) {
    this.rooms = rooms;
    this.store = store;
    this.me = me;
    this.open = open;
    this.say = say;
    this.browser = byId("room-browser", HTMLDialogElement);
    this.categoryList = byId("room-categories", HTMLUListElement);
    this.search = byId("room-search", HTMLInputElement);
    this.tableBody = byId("room-table-body", HTMLElement);
    this.browserStatus = byId("room-browser-status", HTMLElement);
    /** @type {any[]} */
    this.categories = [];
    /** @type {number | null} null: all categories */
    this.category = null;
    /** @type {number | undefined} */
    this.timer = undefined;
    /** @type {number | undefined} */
    this.searchTimer = undefined;
    this.fetching = 0;
    /** @type {number | null} the room of the invite dialog */
    this.inviteRoom = null;
    /** @type {{room: number, username: string, name: string} | null} */
    this.banning = null;
    /** @type {number | null} the room of the name-and-topic dialog */
    this.editing = null;
    this.bindBrowser();
    this.bindCreate();
    this.bindInvite();
    this.bindBan();
    this.bindEdit();
  }

  // --- the room browser ------------------------------------------------------------------------

  bindBrowser() {
    this.search.addEventListener("input", () => {
      window.clearTimeout(this.searchTimer);
      this.searchTimer = window.setTimeout(() => this.refreshRooms(), SEARCH_DELAY_MS);
    });
    this.search.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        window.clearTimeout(this.searchTimer);
        this.refreshRooms();
      }
    });
    this.browser.addEventListener("close", () => window.clearInterval(this.timer));
  }

  async openBrowser() {
    openDialog(this.browser, this.search);
    setStatus(this.browserStatus, "");
    window.clearInterval(this.timer);
    this.timer = window.setInterval(() => {
      if (this.browser.open && document.visibilityState === "visible") {
        this.refreshRooms(true);
      }
    }, LIVE_COUNTS_MS);
    try {
      this.categories = await net.categories();
    } catch (error) {
      setStatus(this.browserStatus, explain(error), "error");
    }
    this.renderCategories();
    await this.refreshRooms();
  }

  renderCategories() {
    /**
     * @param {number | null} id
     * @param {string} name
     * @param {number | null} count
     */
    const item = (id, name, count) => {
      const button = el(
        "button",
        {
          className: "room-browser__category",
          attrs: { type: "button", "aria-pressed": String(this.category === id) },
        },
        [el("span", { className: "room-browser__category-name", text: name })],
      );
      if (count !== null) {
        button.append(
          el("span", { className: "room-browser__category-count", text: String(count) }),
        );
      }
      button.dataset.category = id === null ? "" : String(id);
      button.addEventListener("click", () => {
        this.category = id;
        this.renderCategories();
        this.refreshRooms();
      });
      return el("li", {}, [button]);
    };
    const sorted = [...this.categories].sort((a, b) => (a.position ?? 0) - (b.position ?? 0));
    this.categoryList.replaceChildren(
      item(null, "All rooms", null),
      ...sorted.map((c) =>
        item(Number(c.id), String(c.name), typeof c.room_count === "number" ? c.room_count : null),
      ),
    );
  }

  /** @param {boolean} [quiet] a periodic refresh: no "loading" */
  async refreshRooms(quiet = false) {
    const ticket = ++this.fetching;
    if (!quiet) {
      this.tableBody.setAttribute("aria-busy", "true");
    }
    /** @type {any[]} */
    let list;
    try {
      list = await net.browse({ category: this.category, q: this.search.value.trim() });
    } catch (error) {
      if (ticket === this.fetching && !quiet) {
        setStatus(this.browserStatus, explain(error), "error");
      }
      return;
    } finally {
      this.tableBody.removeAttribute("aria-busy");
    }
    if (ticket !== this.fetching) {
      return; // a newer search answered first
    }
    this.renderRooms(list);
  }

  /** @param {any[]} list */
  renderRooms(list) {
    const focusedRoom =
      document.activeElement instanceof HTMLElement &&
      this.tableBody.contains(document.activeElement)
        ? document.activeElement.dataset.room
        : undefined;
    const rows = list.map((room) => {
      const id = Number(room.id);
      const joined = room.joined === true || this.rooms.rooms.has(id);
      const full = typeof room.capacity === "number" && room.member_count >= room.capacity;
      const button = el("button", {
        className: `button ${joined ? "" : "button--primary"} room-table__join`,
        text: joined ? "Open" : "Join",
        attrs: {
          type: "button",
          "aria-label": `${joined ? "Open" : "Join"} ${room.name}`,
          disabled: !joined && full,
        },
      });
      button.dataset.room = String(id);
      button.addEventListener("click", () => this.join(id, String(room.name), joined));
      const row = el("tr", { className: "room-table__row" }, [
        el("th", { className: "room-table__room", attrs: { scope: "row" } }, [
          el("span", { className: "room-table__name", text: String(room.name) }),
          el("span", { className: "room-table__topic", text: String(room.topic ?? "") }),
        ]),
        el("td", {
          className: "room-table__num room-table__members",
          text: String(room.member_count ?? 0),
          attrs: { title: full ? "Full" : `${room.member_count ?? 0} of ${room.capacity ?? "?"}` },
        }),
        el("td", {
          className: `room-table__num room-table__online${room.online_count ? "" : " room-table__online--none"}`,
          text: String(room.online_count ?? 0),
        }),
        el("td", { className: "room-table__action" }, [button]),
      ]);
      row.dataset.room = String(id);
      row.dataset.name = String(room.name);
      row.addEventListener("dblclick", () => this.join(id, String(room.name), joined));
      return row;
    });
    this.tableBody.replaceChildren(...rows);
    byId("room-table-empty", HTMLElement).hidden = rows.length > 0;
    if (focusedRoom) {
      /** @type {HTMLElement | null} */ (
        this.tableBody.querySelector(`button[data-room="${focusedRoom}"]`)
      )?.focus();
    }
  }

  /**
   * @param {number} id
   * @param {string} name
   * @param {boolean} joined
   */
  async join(id, name, joined) {
    try {
      if (!joined) {
        await this.rooms.join(id);
      }
      this.browser.close();
      this.open(id);
      if (!joined) {
        this.say(`You joined ${name}.`, "success");
      }
    } catch (error) {
      setStatus(this.browserStatus, `You cannot join ${name}: ${explain(error)}.`, "error");
    }
  }

  // --- a new group ----------------------------------------------------------------------------

  bindCreate() {
    const dialog = byId("group-dialog", HTMLDialogElement);
    const form = byId("group-form", HTMLFormElement);
    bindForm(form, async ({ name, topic }) => {
      const encrypted = byId("group-encrypted", HTMLInputElement).checked;
      const room = await this.rooms.createGroup({
        name: name.trim(),
        topic: topic.trim(),
        encrypted,
      });
      dialog.close();
      form.reset();
      if (room) {
        this.say(`You made the group ${room.name}. Invite your buddies to it.`, "success");
        this.open(room.id);
      }
    });
  }

  openCreate() {
    const form = byId("group-form", HTMLFormElement);
    form.reset();
    setStatus(byId("group-status", HTMLElement), "");
    openDialog(byId("group-dialog", HTMLDialogElement));
  }

  // --- invite ------------------------------------------------------------------------------------

  bindInvite() {
    const dialog = byId("invite-dialog", HTMLDialogElement);
    const form = byId("invite-form", HTMLFormElement);
    bindForm(
      form,
      async ({ username }) => {
        const who = username.trim().toLowerCase();
        const room = this.inviteRoom;
        if (room === null) {
          return;
        }
        await net.invite(room, who);
        dialog.close();
        const name = this.store.get().buddies[who]?.display_name || who;
        this.say(`Invitation sent to ${name}.`, "success");
      },
      {
        explain: (error) => {
          const text = WHY[/** @type {keyof typeof WHY} */ (error.code)];
          return text ? { field: "username", message: text } : null;
        },
      },
    );
  }

  /** @param {number} room */
  openInvite(room) {
    this.inviteRoom = room;
    const info = this.rooms.rooms.get(room);
    const members = this.rooms.logs.get(room)?.members ?? new Map();
    const buddies = Object.values(this.store.get().buddies).filter((b) => !members.has(b.username));
    byId("invite-buddies", HTMLDataListElement).replaceChildren(
      ...buddies.map((b) =>
        el("option", { attrs: { value: b.username }, text: b.display_name || b.username }),
      ),
    );
    byId("invite-intro", HTMLElement).textContent =
      `Invite a buddy to ${info?.name ?? "the group"}. They see the invitation and decide.`;
    const form = byId("invite-form", HTMLFormElement);
    form.reset();
    setStatus(byId("invite-status", HTMLElement), "");
    openDialog(byId("invite-dialog", HTMLDialogElement));
  }

  // --- name and topic ------------------------------------------------------------------------------

  bindEdit() {
    const dialog = byId("room-edit-dialog", HTMLDialogElement);
    const form = byId("room-edit-form", HTMLFormElement);
    bindForm(form, async ({ name, topic }) => {
      const room = this.editing;
      if (room === null) {
        return;
      }
      const answer = await net.updateRoom(room, { name: name.trim(), topic: topic.trim() });
      this.rooms.onUpdate({ action: "changed", room: answer });
      dialog.close();
    });
  }

  /** @param {number} room */
  openEdit(room) {
    const info = this.rooms.rooms.get(room);
    if (!info) {
      return;
    }
    this.editing = room;
    const form = byId("room-edit-form", HTMLFormElement);
    form.reset();
    byId("room-edit-name", HTMLInputElement).value = info.name;
    byId("room-edit-topic", HTMLInputElement).value = info.topic;
    setStatus(byId("room-edit-status", HTMLElement), "");
    openDialog(byId("room-edit-dialog", HTMLDialogElement));
  }

  // --- ban ------------------------------------------------------------------------------------------

  bindBan() {
    const dialog = byId("ban-dialog", HTMLDialogElement);
    const form = byId("ban-form", HTMLFormElement);
    bindForm(form, async ({ reason, minutes }) => {
      const target = this.banning;
      if (!target) {
        return;
      }
      await net.ban(target.room, target.username, reason.trim(), Number(minutes) || null);
      dialog.close();
      const room = this.rooms.rooms.get(target.room)?.name ?? "the room";
      this.say(`${target.name} is banned from ${room}.`, "success");
    });
  }

  /**
   * @param {number} room
   * @param {string} username
   * @param {string} name
   */
  openBan(room, username, name) {
    this.banning = { room, username, name };
    byId("ban-intro", HTMLElement).textContent =
      `Ban ${name} from ${this.rooms.rooms.get(room)?.name ?? "the room"}: they leave it now and cannot come back until the ban ends.`;
    const form = byId("ban-form", HTMLFormElement);
    form.reset();
    setStatus(byId("ban-status", HTMLElement), "");
    openDialog(byId("ban-dialog", HTMLDialogElement));
  }
}
