// @ts-check
/**
 * The buddy-list window put together: the socket's events go into the buddy state
 * (state/buddies.js), the state into the list, the dialogs and the request alert; the
 * menus, dialogs and the status selector act through actions.js and buddymenu.js (the HTTP
 * API) and the socket. Also here: my own presence (chosen state, status text, idleness),
 * the sign-in/out sounds and the kicked/unauthorized endings.
 *
 * On every (re)connect and resync the list is fetched again, since presence and buddy events
 * are not replayed; events that arrive while the fetch runs are applied after it. My own
 * presence is restored on a reconnect only (on a resync the server still has it).
 *
 * Private messages: state/conversations.js keeps the transcripts (from the socket, the
 * history API and the key session `keys`), ui/pms.js shows them in the PM windows and the
 * dock; the list shows each buddy's unread count and opens a window on a double-click.
 */

import { ApiError } from "../net/api.js";
import * as net from "../net/buddies.js";
import { SocketError } from "../net/socket.js";
import * as buddies from "../state/buddies.js";
import { Conversations } from "../state/conversations.js";
import { asChoice } from "../state/presence.js";
import { Store } from "../state/store.js";
import { listActions, loadFolded, saveFolded } from "./actions.js";
import { buddyMenus } from "./buddymenu.js";
import { BuddyListView } from "./buddylist.js";
import { bindConnection } from "./connection.js";
import { Dialogs } from "./dialogs.js";
import { byId } from "./dom.js";
import { problemText, sentence, setStatus } from "./forms.js";
import { watchIdle } from "./idle.js";
import { bindMenubar } from "./menubar.js";
import { leave, signInAgain } from "./navigate.js";
import { PmManager } from "./pms.js";
import { bindReports, showReportUpdate } from "./report.js";
import { Sounds } from "./sounds.js";
import { StatusControl } from "./status.js";

/** @typedef {import("../net/socket.js").Socket} Socket */
/** @typedef {import("../state/presence.js").MyPresence} MyPresence */
/** @typedef {import("../state/conversations.js").Keys} Keys */

/** Where the sign-in page finds a message about why the session ended (login.js). */
export const NOTICE_KEY = "echochat.notice";
const NOTICE_CLEAR_MS = 8000;
/** After a sign-out elsewhere, leave only if the page has not left by itself by then. */
const SIGNED_OUT_GRACE_MS = 500;
/** Show the list even if the socket takes this long to connect. */
const FIRST_LOAD_MS = 3000;

/**
 * @param {{socket: Socket, me: string, idleMs: number, keys?: Keys | null}} options
 *   `keys`: the E2EE key session (state/keysession.js); without it PM windows stay locked
 */
export function startMessenger({ socket, me, idleMs, keys = null }) {
  const windowEl = byId("buddy-window", HTMLElement);
  const noticeEl = byId("buddy-notice", HTMLElement);
  const store = new Store(buddies.emptyState(me, loadFolded(me)));
  /** @type {number | undefined} */
  let noticeTimer;

  /**
   * @param {string} message
   * @param {"info" | "error" | "success"} [tone]
   */
  const notify = (message, tone = "info") => {
    window.clearTimeout(noticeTimer);
    setStatus(noticeEl, message, tone);
    if (tone !== "error") {
      noticeTimer = window.setTimeout(() => setStatus(noticeEl, ""), NOTICE_CLEAR_MS);
    }
  };

  /** A refusal in words, or off to the sign-in page when the session is over. */
  const failed = (/** @type {unknown} */ error) => {
    if (error instanceof ApiError && error.status === 401) {
      signInAgain();
      return;
    }
    notify(problemText(error), "error");
  };

  const actions = listActions(store);
  const dialogs = new Dialogs({ store, actions, notify });
  bindReports({ notify });

  // --- private messages ---------------------------------------------------------------------

  const sounds = new Sounds(windowEl);
  socket.deviceId = () => keys?.deviceId ?? null;
  const conversations = new Conversations({ me, socket, keys });
  const pms = new PmManager({
    me,
    conversations,
    keys,
    sounds,
    buddy(peer) {
      const buddy = store.get().buddies[peer];
      return buddy
        ? { name: buddy.display_name || peer, state: buddy.state, status: buddy.status }
        : { name: conversations.names.get(peer) || peer, state: "offline", status: "" };
    },
  });
  const openChat = (/** @type {string} */ username) => {
    pms.open(username);
  };
  const buddyMenu = buddyMenus({ store, dialogs, notify, failed, openChat });

  // --- the list, the request alert and the counts -------------------------------------------

  const view = new BuddyListView(byId("buddy-list", HTMLElement), {
    onToggle(group) {
      store.update((s) => buddies.toggleFolded(s, group));
      saveFolded(store.get());
    },
    onMenu: buddyMenu,
    onOpen: openChat,
  });
  conversations.on("counts", () => view.setUnread(conversations.counts()));
  const alert = byId("request-alert", HTMLElement);
  const alertText = byId("request-alert-text", HTMLElement);
  const requestCount = byId("requests-count", HTMLElement);
  store.subscribe((state, previous) => {
    view.render(state);
    if (state.buddies !== previous.buddies) {
      pms.updateBuddies();
    }
    const waiting = state.incoming;
    alert.hidden = waiting.length === 0;
    if (waiting.length === 1) {
      const [first] = waiting;
      alertText.textContent = `${first.from_display_name || first.from_username} wants to be your buddy.`;
    } else if (waiting.length) {
      alertText.textContent = `${waiting.length} people want to be your buddy.`;
    }
    requestCount.hidden = waiting.length === 0;
    requestCount.textContent = String(waiting.length);
  });
  byId("request-alert-open", HTMLButtonElement).addEventListener("click", () =>
    dialogs.openRequests(),
  );

  // --- sounds ----------------------------------------------------------------------------------

  const muteButton = byId("tool-sound", HTMLButtonElement);
  const showMute = () => {
    muteButton.setAttribute("aria-pressed", String(sounds.muted));
    muteButton.title = sounds.muted
      ? "Sounds are off"
      : "Sounds are on (sign-ins, messages, BUZZ!)";
  };
  const toggleMute = () => {
    sounds.setMuted(!sounds.muted);
    showMute();
    notify(sounds.muted ? "Sounds are off." : "Sounds are on.");
  };
  muteButton.addEventListener("click", toggleMute);
  showMute();

  // --- my presence -------------------------------------------------------------------------

  /** @type {MyPresence} */
  let mine = { state: "online", status: "" };
  let known = false; // learnt from the server, or chosen here
  // Each reconnect starts with what this tab chose, so buddies see no flash of "online".
  socket.presence = () => (known ? { state: mine.state, status: mine.status } : null);
  /** @param {Record<string, unknown>} data */
  const pushPresence = async (data) => {
    if (socket.status.state !== "online") {
      return; // sent when the connection is back (syncMine)
    }
    try {
      await socket.request("presence.set", data);
    } catch (error) {
      if (error instanceof SocketError && !["disconnected", "not_connected"].includes(error.code)) {
        notify(sentence(error.message), "error");
      }
    }
  };
  const status = new StatusControl(
    {
      button: byId("status-button", HTMLButtonElement),
      label: byId("status-label", HTMLElement),
      dots: [byId("status-dot", HTMLElement), byId("me-dot", HTMLElement)],
      input: byId("status-text", HTMLInputElement),
      hook: windowEl,
    },
    {
      onChoose(state) {
        known = true;
        mine = { ...mine, state };
        showMine();
        pushPresence({ state });
      },
      onText(text) {
        known = true;
        mine = { ...mine, status: text };
        showMine();
        pushPresence({ status: text });
        notify(text ? "Status message saved." : "Status message cleared.", "success");
      },
      onProblem: (message) => notify(sentence(message), "error"),
    },
  );
  const idle = watchIdle(idleMs, (isIdle) => {
    showMine();
    pushPresence({ idle: isIdle });
  });
  const showMine = () => status.show(mine, idle.idle);
  showMine();

  /** After (re)connecting: learn my presence, or restore it (a restarted server forgot it). */
  async function syncMine() {
    const data = known
      ? { state: mine.state, status: mine.status, idle: idle.idle }
      : { idle: idle.idle };
    try {
      const reply = await socket.request("presence.set", data);
      if (!known) {
        known = true;
        const state = reply.state === "away" && idle.idle ? "online" : asChoice(reply.state);
        mine = { state, status: typeof reply.status === "string" ? reply.status : "" };
        showMine();
      }
    } catch {
      // dropped again: the next "ready" tries again
    }
  }

  // --- events and resyncs ------------------------------------------------------------------------

  /** @type {{type: string, data: any}[] | null} */
  let buffered = null;
  let again = false;

  /**
   * @param {string} type
   * @param {any} data
   */
  function handle(type, data) {
    if (type === "presence.self") {
      // Chosen on this or another of my tabs/devices: every status selector agrees.
      known = true;
      mine = { state: asChoice(data.state), status: typeof data.status === "string" ? data.status : "" };
      showMine();
    } else if (type === "presence") {
      const { state, change } = buddies.applyPresence(store.get(), data);
      store.set(state);
      if (change) {
        sounds.play(change, data.username);
      }
    } else if (type === "buddy.groups") {
      // Groups created, renamed or deleted on another tab: refetch (buddies may have moved).
      resync();
    } else if (type === "report.update") {
      showReportUpdate(data);
    } else if (type === "buddy.request") {
      store.update((s) => buddies.applyRequest(s, data.request));
    } else if (type === "buddy.update") {
      const asked = store
        .get()
        .outgoing.find((r) => r.id === data.request_id || r.to_username === data.username);
      store.update((s) => buddies.applyUpdate(s, data));
      if (asked && data.action === "added") {
        notify(
          `${data.buddy?.display_name || data.username} accepted your buddy request.`,
          "success",
        );
      } else if (asked && data.action === "request_declined") {
        notify(`Your buddy request to ${data.username} was declined.`);
      }
    }
  }

  async function resync() {
    if (buffered) {
      again = true; // reconnected while fetching: that answer may be old, fetch once more
      return;
    }
    again = false;
    buffered = [];
    try {
      const list = await net.fetchBuddyList();
      store.update((s) => buddies.applyList(s, list));
    } catch (error) {
      failed(error);
    } finally {
      const queued = buffered ?? [];
      buffered = null;
      for (const { type, data } of queued) {
        handle(type, data);
      }
      if (again) {
        resync();
      }
    }
  }

  socket.on("event", ({ type, data }) => {
    if (buffered) {
      buffered.push({ type, data });
    } else {
      handle(type, data);
    }
  });
  socket.on("ready", () => {
    resync();
    syncMine();
  });
  socket.on("resynced", () => resync());
  socket.on("kicked", (data) => {
    if (data.reason === "logged_out") {
      // Signed out here (the sign-out button navigates itself) or in another tab.
      window.setTimeout(() => leave("/login"), SIGNED_OUT_GRACE_MS);
      return;
    }
    try {
      sessionStorage.setItem(
        NOTICE_KEY,
        sentence(String(data.message || "your session has ended")),
      );
    } catch {
      // no storage: the sign-in page simply shows no reason
    }
    signInAgain();
  });
  socket.on("unauthorized", () => signInAgain());
  bindConnection(socket, windowEl);
  window.setTimeout(() => {
    if (!store.get().loaded) {
      resync();
    }
  }, FIRST_LOAD_MS);

  // --- menus and the toolbar ---------------------------------------------------------------------

  const signOut = byId("sign-out", HTMLButtonElement);
  const pending = () => store.get().incoming.length;
  bindMenubar(byId("menubar", HTMLElement), {
    messenger: () => [
      {
        label: "Signed-in devices",
        command: "devices",
        run: () => window.location.assign("/devices"),
      },
      {
        kind: "checkbox",
        label: "Mute sounds",
        checked: sounds.muted,
        command: "mute",
        run: toggleMute,
      },
      { kind: "separator" },
      { label: "Sign out", command: "sign-out", run: () => signOut.click() },
    ],
    contacts: () => [
      { label: "Add a buddy…", command: "add", run: () => dialogs.openAddBuddy() },
      {
        label: "Pending requests…",
        hint: pending() ? `${pending()} waiting for your answer` : "",
        command: "requests",
        run: () => dialogs.openRequests(),
      },
      { label: "Manage groups…", command: "groups", run: () => dialogs.openGroups() },
      { label: "Blocked users…", command: "blocked", run: () => dialogs.openBlocked() },
    ],
    actions: () => status.items(),
    help: () => [{ label: "About EchoChat", command: "about", run: () => dialogs.openAbout() }],
  });
  byId("tool-add", HTMLButtonElement).addEventListener("click", () => dialogs.openAddBuddy());
  byId("tool-requests", HTMLButtonElement).addEventListener("click", () => dialogs.openRequests());

  return { store, dialogs, conversations, pms };
}
