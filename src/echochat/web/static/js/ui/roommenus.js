// @ts-check
/**
 * The rooms' menus (ui/menu.js): the open room's ⋯ menu (invite, members, leave, delete a
 * group), a message's menu (reply, ignore its sender, delete: its author, the room's owner
 * and moderators, and staff), a member's menu (message, mention, ignore; for moderators
 * mute, kick, ban; for the owner roles and ownership). Who may moderate follows
 * src/echochat/domain/rooms.py: owner > moderator > member, staff moderate every room,
 * nobody acts on themselves, a moderator not on the owner or another moderator. The
 * server checks all of it again.
 */

import * as net from "../net/rooms.js";
import { explain } from "./roomdialogs.js";
import { openMenu } from "./menu.js";
import { REPORT_EVENT } from "./report.js";

/** @typedef {import("../state/rooms.js").Rooms} Rooms */
/** @typedef {import("../state/rooms.js").Room} Room */
/** @typedef {import("../state/roomlog.js").Line} Line */
/** @typedef {import("../state/roomlog.js").Member} Member */
/** @typedef {import("./menu.js").MenuItem} MenuItem */
/** @typedef {import("./roomview.js").RoomView} RoomView */
/** @typedef {import("./roomdialogs.js").RoomDialogs} RoomDialogs */
/** @typedef {import("../state/store.js").Store<import("../state/buddies.js").BuddyState>} BuddyStore */
/** @typedef {{anchor?: HTMLElement, point?: {x: number, y: number}, returnFocus: HTMLElement}} Where */

const RANK = { member: 0, moderator: 1, owner: 2 };
const MUTES = [
  [5, "Mute for 5 minutes"],
  [60, "Mute for 1 hour"],
  [1440, "Mute for 1 day"],
];

/**
 * Whether `actor` (my role, or staff) may moderate a member with role `target`.
 * @param {string} actor
 * @param {boolean} staff
 * @param {string | null} target null: not a member
 */
export function mayModerate(actor, staff, target) {
  if (staff) {
    return true;
  }
  if (actor !== "owner" && actor !== "moderator") {
    return false;
  }
  return target === null || RANK[/** @type {keyof typeof RANK} */ (target)] < RANK[actor];
}

/**
 * @param {{me: string, rooms: Rooms, store: BuddyStore, staff: boolean, view: RoomView,
 *   dialogs: RoomDialogs, current: () => Room | null, nameOf: (u: string) => string,
 *   confirm: (q: {title: string, text: string, ok: string}) => Promise<boolean>,
 *   openChat?: (username: string) => void,
 *   say: (message: string, tone?: "info" | "error" | "success") => void, closeRoom: () => void}} deps
 */
export function roomMenus(deps) {
  const { me, rooms, store, staff, view, dialogs, current, nameOf, confirm, openChat, say } = deps;

  /**
   * Run a moderation call; say what it did or why not.
   * @param {() => Promise<unknown>} call
   * @param {string} done
   */
  async function act(call, done) {
    try {
      await call();
      if (done) {
        view.note(done, "info");
        const room = current();
        if (room) {
          view.render(rooms.log(room.id), rooms.ignored, nameOf);
        }
      }
    } catch (error) {
      view.note(`That did not work: ${explain(error)}.`, "error");
      const room = current();
      if (room) {
        view.render(rooms.log(room.id), rooms.ignored, nameOf);
      }
    }
  }

  /** @param {string} username */
  function ignoreItem(username) {
    const ignored = rooms.ignored.has(username);
    return {
      label: ignored ? `Stop ignoring ${nameOf(username)}` : `Ignore ${nameOf(username)}`,
      hint: ignored ? "" : "Hide their messages here (only you see this)",
      command: ignored ? "unignore" : "ignore",
      run: () => rooms.setIgnored(username, !ignored),
    };
  }

  /**
   * Open the report dialog (ui/report.js) through its DOM event.
   * @param {{kind: "user" | "room_message", username: string, messageId?: number, text?: string}} about
   */
  function report(about) {
    document.dispatchEvent(
      new CustomEvent(REPORT_EVENT, { detail: { ...about, name: nameOf(about.username) } }),
    );
  }

  /** @param {string} username */
  function mention(username) {
    view.insert(`@${username} `);
  }

  /** @param {HTMLElement} anchor */
  function room(anchor) {
    const info = current();
    if (!info) {
      return;
    }
    const group = info.kind === "group";
    const membersOpen = view.membersToggle.getAttribute("aria-expanded") === "true";
    /** @type {MenuItem[]} */
    const items = [];
    if (group) {
      items.push({
        label: "Invite a buddy…",
        command: "invite",
        run: () => dialogs.openInvite(info.id),
      });
    }
    if (staff || info.role === "owner" || info.role === "moderator") {
      items.push({
        label: "Name and topic…",
        command: "edit",
        run: () => dialogs.openEdit(info.id),
      });
    }
    items.push(
      {
        label: membersOpen ? "Hide members" : "Show members",
        command: "members",
        run: () => view.showMembers(!membersOpen),
      },
      { kind: "separator" },
      {
        label: group ? "Leave group" : "Leave room",
        command: "leave",
        run: async () => {
          const owner = info.role === "owner";
          const sure = await confirm({
            title: group ? "Leave group" : "Leave room",
            text: owner
              ? `You own ${info.name}. Leaving is possible when you are its last member (then the group is deleted); otherwise make someone else the owner first.`
              : `Leave ${info.name}? You stop getting its messages${group ? " and need a new invitation to come back" : ""}.`,
            ok: "Leave",
          });
          if (sure) {
            try {
              await rooms.leave(info.id);
            } catch (error) {
              say(`You could not leave ${info.name}: ${explain(error)}.`, "error");
            }
          }
        },
      },
    );
    if (group && info.role === "owner") {
      items.push({
        label: "Delete group…",
        command: "delete-group",
        run: async () => {
          const sure = await confirm({
            title: "Delete group",
            text: `Delete ${info.name} for everyone? Its messages are gone for good.`,
            ok: "Delete",
          });
          if (sure) {
            try {
              await net.deleteRoom(info.id);
              rooms.forget(info.id, info.name, "deleted");
            } catch (error) {
              say(`${info.name} could not be deleted: ${explain(error)}.`, "error");
            }
          }
        },
      });
    }
    openMenu({ items, label: `${info.name} menu`, anchor, className: "menu--room" });
  }

  /**
   * @param {Line} line
   * @param {Where} where
   */
  function line(line, where) {
    const info = current();
    if (!info || line.id === null) {
      return;
    }
    const mine = line.sender === me;
    const target = rooms.log(info.id).members.get(line.sender)?.role ?? null;
    /** @type {MenuItem[]} */
    const items = [];
    if (!mine) {
      items.push({
        label: `Reply to ${nameOf(line.sender)}`,
        command: "reply",
        run: () => mention(line.sender),
      });
      items.push(ignoreItem(line.sender));
    }
    if (!mine) {
      const id = line.id;
      items.push({
        label: "Report…",
        hint: "Tell the server's moderators",
        command: "report",
        run: () =>
          report({
            kind: "room_message",
            username: line.sender,
            messageId: id,
            text: line.state === "open" ? line.text : "",
          }),
      });
    }
    if (mine || mayModerate(info.role, staff, target) || staff) {
      const id = line.id;
      items.push({
        label: "Delete message",
        hint: mine ? "" : "Removed for everyone in the room",
        command: "delete",
        run: () => act(() => net.deleteMessage(info.id, id), ""),
      });
    }
    if (items.length) {
      openMenu({ items, label: "Message menu", ...where, className: "menu--room" });
    }
  }

  /**
   * @param {Member} member
   * @param {Where} where
   */
  function member(member, where) {
    const info = current();
    if (!info) {
      return;
    }
    const self = member.username === me;
    const name = member.name;
    /** @type {MenuItem[]} */
    const items = [];
    if (!self) {
      if (store.get().buddies[member.username] && openChat) {
        items.push({
          label: "Send a message",
          command: "pm",
          run: () => openChat(member.username),
        });
      }
      items.push({
        label: `Mention ${name}`,
        command: "mention",
        run: () => mention(member.username),
      });
      items.push(ignoreItem(member.username));
      items.push({
        label: `Report ${name}…`,
        command: "report-user",
        run: () => report({ kind: "user", username: member.username }),
      });
    }
    if (!self && mayModerate(info.role, staff, member.role)) {
      const room = info.id;
      const who = member.username;
      items.push({ kind: "separator" });
      if (member.mutedUntil && member.mutedUntil > Date.now()) {
        items.push({
          label: "Lift the mute",
          command: "unmute",
          run: () => act(() => net.mute(room, who, 0), `${name} may talk again.`),
        });
      } else {
        for (const [minutes, label] of MUTES) {
          items.push({
            label: String(label),
            command: `mute-${minutes}`,
            run: () => act(() => net.mute(room, who, Number(minutes)), `${name} is muted.`),
          });
        }
      }
      items.push({
        label: "Kick out…",
        command: "kick",
        run: async () => {
          const sure = await confirm({
            title: "Kick out",
            text: `Remove ${name} from ${info.name}? ${info.kind === "group" ? "They need a new invitation to come back." : "They may join again."}`,
            ok: "Kick out",
          });
          if (sure) {
            act(() => net.kick(room, who), "");
          }
        },
      });
      items.push({ label: "Ban…", command: "ban", run: () => dialogs.openBan(room, who, name) });
    }
    if (!self && info.role === "owner" && info.kind === "group") {
      const room = info.id;
      const who = member.username;
      items.push({ kind: "separator" });
      items.push(
        member.role === "moderator"
          ? {
              label: "Make a member",
              command: "demote",
              run: () => act(() => net.setRole(room, who, "member"), `${name} is a member again.`),
            }
          : {
              label: "Make a moderator",
              command: "promote",
              run: () =>
                act(() => net.setRole(room, who, "moderator"), `${name} is now a moderator.`),
            },
      );
      items.push({
        label: "Make the owner…",
        command: "owner",
        run: async () => {
          const sure = await confirm({
            title: "Hand over the group",
            text: `Make ${name} the owner of ${info.name}? You become a moderator.`,
            ok: "Hand over",
          });
          if (sure) {
            act(() => net.transferOwner(room, who), `${name} owns the group now.`);
          }
        },
      });
    }
    if (items.length) {
      openMenu({ items, label: `${name} menu`, ...where, className: "menu--room" });
    }
  }

  return { room, line, member };
}
