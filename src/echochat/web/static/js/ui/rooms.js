// @ts-check
/**
 * Chat rooms and private groups in the main window, put together: the Buddies / Rooms tabs
 * above the list, the rooms panel (my rooms with unread counts, "Browse rooms…", "New
 * group…"), the invitation bar, and the open room beside the list (the window widens; on a
 * narrow screen the room takes the whole window and "‹" goes back). The state is
 * state/rooms.js; the room itself is drawn by roomview.js; the dialogs are in
 * roomdialogs.js and the menus in roommenus.js.
 *
 * A room counts as read while it is open, the tab is visible and focused, and the user is
 * at the bottom of its transcript. A message that mentions `@me` flashes the title and
 * shows a desktop notification (ui/notify.js) when the user is not looking.
 */

import { memberList, typingText } from "../state/roomlog.js";
import { Rooms } from "../state/rooms.js";
import { byId, el } from "./dom.js";
import { setStatus } from "./forms.js";
import { extendMenu } from "./menubar.js";
import { Notifier } from "./notify.js";
import { RoomDialogs } from "./roomdialogs.js";
import { roomMenus } from "./roommenus.js";
import { RoomView } from "./roomview.js";

/** @typedef {import("../net/socket.js").Socket} Socket */
/** @typedef {import("../state/rooms.js").Room} Room */
/** @typedef {import("../state/buddies.js").BuddyState} BuddyState */
/** @typedef {import("../state/store.js").Store<BuddyState>} BuddyStore */
/** @typedef {import("./sounds.js").Sounds} Sounds */

const NARROW = "(max-width: 36rem)";
const SAVED_KEY = "echochat.room.";
const SAY_CLEAR_MS = 8000;
const MEMBERS_REFRESH_MS = 30_000;

/** What happened to me, in words. */
const GONE = {
  left: (/** @type {string} */ name) => `You left ${name}.`,
  kick: (/** @type {string} */ name) => `You were removed from ${name} by a moderator.`,
  ban: (/** @type {string} */ name) => `You were banned from ${name}.`,
  deleted: (/** @type {string} */ name) => `${name} was deleted.`,
};

/**
 * @param {{me: string, socket: Socket, store: BuddyStore, sounds?: Sounds | null,
 *   confirm: (q: {title: string, text: string, ok: string}) => Promise<boolean>,
 *   openChat?: (username: string) => void, keys?: any}} options
 *   `keys`: the E2EE key session (state/keysession.js), for encrypted groups
 */
export function startRooms({ me, socket, store, sounds = null, confirm, openChat, keys = null }) {
  const windowEl = byId("buddy-window", HTMLElement);
  const page = windowEl.closest(".chat-page");
  const pane = byId("room-pane", HTMLElement);
  const panel = byId("rooms-panel", HTMLElement);
  const buddyList = byId("buddy-list", HTMLElement);
  const tabBuddies = byId("tab-buddies", HTMLButtonElement);
  const tabRooms = byId("tab-rooms", HTMLButtonElement);
  const unreadBadge = byId("rooms-unread", HTMLElement);
  const status = byId("rooms-status", HTMLElement);
  // Staff (rooms:manage) moderate every room: the page says so (chat.html).
  const staff = pane.dataset.staff === "true";
  const rooms = new Rooms({ me, socket, keys });
  /** @type {number | null} */
  let current = null;

  buddyList.setAttribute("role", "tabpanel");
  buddyList.setAttribute("aria-labelledby", "tab-buddies");

  /**
   * @param {string} message
   * @param {"info" | "error" | "success"} [tone]
   */
  const say = (message, tone = "info") => {
    window.clearTimeout(sayTimer);
    setStatus(status, message, tone);
    if (tone !== "error") {
      sayTimer = window.setTimeout(() => setStatus(status, ""), SAY_CLEAR_MS);
    }
  };
  /** @type {number | undefined} */
  let sayTimer;

  /** @param {string} username */
  const nameOf = (username) => {
    const member = current !== null ? rooms.logs.get(current)?.members.get(username) : undefined;
    if (member && member.name !== username) {
      return member.name;
    }
    if (username === me) {
      return document.getElementById("viewer-name")?.textContent?.trim() || me;
    }
    return store.get().buddies[username]?.display_name || member?.name || username;
  };

  const dialogs = new RoomDialogs({ rooms, store, me, open: (id) => openRoom(id), say });
  const notifier = new Notifier({
    onOpen: (key) => openRoom(Number(String(key).replace(/^room-/u, ""))),
  });

  // --- the tabs ----------------------------------------------------------------------------

  /** @param {"buddies" | "rooms"} which */
  function selectTab(which, focus = false) {
    const roomsOn = which === "rooms";
    tabBuddies.setAttribute("aria-selected", String(!roomsOn));
    tabRooms.setAttribute("aria-selected", String(roomsOn));
    tabBuddies.tabIndex = roomsOn ? -1 : 0;
    tabRooms.tabIndex = roomsOn ? 0 : -1;
    buddyList.hidden = roomsOn;
    panel.hidden = !roomsOn;
    windowEl.dataset.tab = which;
    if (focus) {
      (roomsOn ? tabRooms : tabBuddies).focus();
    }
  }
  tabBuddies.addEventListener("click", () => selectTab("buddies"));
  tabRooms.addEventListener("click", () => selectTab("rooms"));
  for (const tab of [tabBuddies, tabRooms]) {
    tab.addEventListener("keydown", (event) => {
      if (["ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) {
        event.preventDefault();
        selectTab(tab === tabBuddies ? "rooms" : "buddies", true);
      }
    });
  }

  // --- the rooms panel -----------------------------------------------------------------------

  function renderPanel() {
    const list = rooms.list();
    const item = (/** @type {Room} */ room) => {
      const button = el(
        "button",
        {
          className: `room-item${room.id === current ? " room-item--open" : ""}`,
          attrs: { type: "button", title: room.topic || room.name },
        },
        [
          el("span", {
            className: `room-item__icon room-item__icon--${room.encrypted ? "locked" : room.kind}`,
            attrs: { "aria-hidden": "true" },
          }),
          el("span", { className: "room-item__name", text: room.name }),
        ],
      );
      button.dataset.room = String(room.id);
      if (room.mentions) {
        button.append(
          el("span", {
            className: "room-item__mention",
            text: "@",
            attrs: { title: "You were mentioned" },
          }),
        );
      }
      if (room.unread) {
        // The server counts up to 1000.
        const count = room.unread > 999 ? "999+" : String(room.unread);
        const badge = el("span", { className: "room-item__unread", text: count });
        badge.dataset.unread = String(room.unread);
        button.append(badge);
        button.setAttribute("aria-label", `${room.name}, ${room.unread} unread`);
      }
      button.addEventListener("click", () => openRoom(room.id));
      return el("li", {}, [button]);
    };
    const publics = list.filter((r) => r.kind === "public");
    const groups = list.filter((r) => r.kind === "group");
    byId("rooms-public", HTMLUListElement).replaceChildren(...publics.map(item));
    byId("rooms-groups", HTMLUListElement).replaceChildren(...groups.map(item));
    byId("rooms-public-empty", HTMLElement).hidden = publics.length > 0 || !rooms.loaded;
    byId("rooms-groups-empty", HTMLElement).hidden = groups.length > 0 || !rooms.loaded;
    const total = rooms.totalUnread();
    unreadBadge.hidden = total === 0;
    unreadBadge.textContent = total > 999 ? "999+" : String(total);
    tabRooms.setAttribute("aria-label", total ? `Rooms, ${total} unread` : "Rooms");
  }

  byId("rooms-browse", HTMLButtonElement).addEventListener("click", () => dialogs.openBrowser());
  byId("rooms-create", HTMLButtonElement).addEventListener("click", () => dialogs.openCreate());
  extendMenu("messenger", () => [
    { label: "Chat rooms…", command: "rooms", run: () => dialogs.openBrowser() },
    { label: "New private group…", command: "new-group", run: () => dialogs.openCreate() },
  ]);

  // --- invitations -------------------------------------------------------------------------------

  const inviteBar = byId("invite-alert", HTMLElement);
  function renderInvites() {
    const [first] = rooms.invites;
    inviteBar.hidden = !first;
    if (!first) {
      return;
    }
    inviteBar.dataset.invite = String(first.id);
    const more = rooms.invites.length > 1 ? ` (and ${rooms.invites.length - 1} more)` : "";
    byId("invite-alert-text", HTMLElement).textContent =
      `${first.fromName} invites you to the ${first.encrypted ? "encrypted " : ""}group “${first.roomName}”${more}.`;
  }
  /** @param {"accept" | "decline"} answer */
  async function answer(answer) {
    const [first] = rooms.invites;
    if (!first) {
      return;
    }
    try {
      await rooms.answerInvite(first.id, answer);
      if (answer === "accept") {
        selectTab("rooms");
        openRoom(first.room);
      } else {
        say(`You declined the invitation to ${first.roomName}.`);
      }
    } catch (error) {
      say(String(/** @type {any} */ (error)?.message ?? error), "error");
    }
  }
  byId("invite-accept", HTMLButtonElement).addEventListener("click", () => answer("accept"));
  byId("invite-decline", HTMLButtonElement).addEventListener("click", () => answer("decline"));

  // --- the open room ---------------------------------------------------------------------------

  const view = new RoomView({
    me,
    handlers: {
      onSend: (text) => {
        if (current !== null) {
          rooms.send(current, text);
        }
      },
      onTyping: (active) => {
        if (current !== null) {
          rooms.typing(current, active);
        }
      },
      onOlder: () => {
        if (current !== null) {
          rooms.loadOlder(current);
        }
      },
      onClose: () => closeRoom(),
      onSeen: () => readIfSeen(),
      onRetry: (clientId) => {
        if (current !== null) {
          rooms.retry(current, clientId);
        }
      },
      onInvite: () => {
        if (current !== null) {
          dialogs.openInvite(current);
        }
      },
      onUnlock: () => keys?.promptUnlock?.(),
      onRoomMenu: (anchor) => menus.room(anchor),
      onLineMenu: (line, where) => menus.line(line, where),
      onMemberMenu: (member, where) => menus.member(member, where),
    },
  });

  const menus = roomMenus({
    me,
    rooms,
    store,
    staff,
    confirm,
    dialogs,
    view,
    current: () => (current !== null ? (rooms.rooms.get(current) ?? null) : null),
    nameOf,
    openChat,
    say,
    closeRoom: () => closeRoom(),
  });

  /** Where the pane starts: under the menu bar (it covers the list column on a narrow screen). */
  function placePane() {
    const bar = byId("menubar", HTMLElement);
    pane.style.top = `${bar.offsetTop + bar.offsetHeight}px`;
  }
  new ResizeObserver(() => {
    if (!pane.hidden) {
      placePane();
    }
  }).observe(windowEl);

  /** @param {number} id */
  function openRoom(id) {
    const room = rooms.rooms.get(id);
    if (!room) {
      return;
    }
    current = id;
    view.setRoom(room);
    pane.hidden = false;
    windowEl.classList.add("buddy-window--room");
    page?.classList.add("chat-page--room");
    placePane();
    const lines = rooms.log(id);
    renderRoom();
    renderMembers();
    view.setTyping(typingNow(id));
    showLock();
    if (!lines.history) {
      rooms.loadNewest(id).then(() => {
        view.scrollToBottom();
        readIfSeen();
      });
    }
    if (!lines.membersLoaded) {
      rooms.loadMembers(id);
    }
    renderPanel();
    view.scrollToBottom();
    try {
      localStorage.setItem(SAVED_KEY + me, String(id));
    } catch {
      // not remembered
    }
    // Not on a phone: the on-screen keyboard would cover the room at once.
    if (!view.input.disabled && !window.matchMedia(NARROW).matches) {
      view.input.focus({ preventScroll: true });
    }
    readIfSeen();
  }

  function closeRoom() {
    view.stopTyping();
    current = null;
    pane.hidden = true;
    windowEl.classList.remove("buddy-window--room");
    page?.classList.remove("chat-page--room");
    delete pane.dataset.room;
    try {
      localStorage.removeItem(SAVED_KEY + me);
    } catch {
      // nothing remembered
    }
    renderPanel();
    selectTab("rooms", true);
  }

  function renderRoom() {
    if (current !== null) {
      view.render(rooms.log(current), rooms.ignored, nameOf);
    }
  }

  function renderMembers() {
    if (current !== null) {
      const lines = rooms.log(current);
      view.renderMembers(memberList(lines), rooms.ignored);
    }
  }

  /** @param {number} id */
  function typingNow(id) {
    const lines = rooms.logs.get(id);
    const names = [...(lines?.typing ?? [])].filter((u) => !rooms.ignored.has(u)).map(nameOf);
    return typingText(names);
  }

  function looking() {
    return (
      current !== null &&
      !pane.hidden &&
      document.visibilityState === "visible" &&
      document.hasFocus()
    );
  }

  function readIfSeen() {
    if (
      looking() &&
      current !== null &&
      (view.atBottom() || view.scroller.scrollHeight <= view.scroller.clientHeight)
    ) {
      rooms.markRead(current);
      notifier.stopFlash();
    }
  }
  document.addEventListener("visibilitychange", readIfSeen);
  window.addEventListener("focus", readIfSeen);

  function showLock() {
    const room = current !== null ? rooms.rooms.get(current) : null;
    if (!room?.encrypted) {
      view.setLocked(false, "", false);
    } else if (!keys) {
      view.setLocked(true, "Encryption is not available on this page.", false);
    } else if (!keys.unlocked) {
      const starting = keys.phase === "starting";
      view.setLocked(
        true,
        starting
          ? "Loading your encryption keys…"
          : "This group is end-to-end encrypted. Unlock your keys to read and send messages.",
        !starting,
      );
    } else {
      view.setLocked(false, "", false);
    }
  }
  keys?.on?.("state", () => showLock());

  // --- the state's events ------------------------------------------------------------------------

  rooms.on("rooms", () => {
    renderPanel();
    if (current !== null) {
      const room = rooms.rooms.get(current);
      if (room) {
        view.setRoom(room);
        showLock();
      }
    }
  });
  rooms.on("invites", () => renderInvites());
  rooms.on("change", ({ room }) => {
    if (room === current) {
      renderRoom();
      readIfSeen();
    }
  });
  rooms.on("members", ({ room, action, username }) => {
    if (room !== current) {
      return;
    }
    renderMembers();
    if (action && username && username !== me) {
      const name = nameOf(username);
      const text = {
        join: `${name} joined.`,
        leave: `${name} left.`,
        kick: `${name} was removed by a moderator.`,
        ban: `${name} was banned from the room.`,
      }[/** @type {string} */ (action)];
      if (text) {
        view.note(text, action === "join" ? "join" : "leave");
        renderRoom();
      }
    }
  });
  rooms.on("typing", ({ room }) => {
    if (room === current) {
      view.setTyping(typingNow(room));
    }
  });
  rooms.on("incoming", ({ room, line }) => {
    if (!line.mention) {
      return;
    }
    const info = rooms.rooms.get(room);
    const name = nameOf(line.sender);
    if (!(looking() && current === room)) {
      sounds?.play("message", line.sender);
      notifier.message(`room-${room}`, `${name} in ${info?.name ?? "a room"}`, line.text);
    }
  });
  rooms.on("gone", ({ room, name, reason }) => {
    const text = (GONE[/** @type {keyof typeof GONE} */ (reason)] ?? GONE.left)(name || "the room");
    if (room === current) {
      closeRoom();
    }
    say(text, reason === "left" ? "info" : "error");
  });
  rooms.on("notice", ({ room, text, tone }) => {
    if (room && room === current) {
      view.note(text, tone);
      renderRoom();
    } else {
      say(text, tone);
    }
  });

  // Buddies' presence changes reach the member lists at once; other members' presence is
  // not sent to me, so the open room's list is fetched again now and then.
  window.setInterval(() => {
    if (current !== null && document.visibilityState === "visible" && socket.ready) {
      rooms.loadMembers(current);
    }
  }, MEMBERS_REFRESH_MS);
  socket.on("presence", (data) => {
    if (typeof data?.username === "string" && typeof data.state === "string") {
      rooms.presence(data.username, data.state);
    }
  });

  // The room that was open before a reload opens again once the list is in.
  let restored = false;
  rooms.on("rooms", () => {
    if (restored) {
      return;
    }
    restored = true;
    let saved = null;
    try {
      saved = Number(localStorage.getItem(SAVED_KEY + me));
    } catch {
      saved = null;
    }
    if (saved && rooms.rooms.has(saved)) {
      openRoom(saved);
    }
  });

  renderPanel();
  return { rooms, openRoom, closeRoom, selectTab };
}
