// @ts-check
/**
 * The buddy list as plain data, and the pure functions that change it. No DOM, no I/O:
 * every function takes a state and returns a new one (the old one is left untouched), so
 * the list can be tested on its own (tests/e2e/test_buddies.py runs these in Chromium).
 *
 * Inputs are the server's shapes: `GET /api/v1/buddies` ({@link BuddyList}) and the
 * `presence`, `buddy.request` and `buddy.update` events of docs/protocol.md.
 */

/** @typedef {"online" | "away" | "busy" | "offline"} ShownState */

/**
 * @typedef {object} Buddy
 * @property {string} username
 * @property {string} display_name
 * @property {string} group
 * @property {boolean} stealth I appear offline to them
 * @property {ShownState} state what I may see of them
 * @property {string} status their custom status text
 */

/**
 * @typedef {object} BuddyRequest
 * @property {number} id
 * @property {string} from_username
 * @property {string} from_display_name
 * @property {string} to_username
 * @property {string} message
 * @property {string} created_at ISO 8601
 */

/**
 * @typedef {object} BuddyList the answer of GET /api/v1/buddies
 * @property {string[]} groups
 * @property {Buddy[]} buddies
 * @property {BuddyRequest[]} incoming
 * @property {BuddyRequest[]} outgoing
 */

/**
 * @typedef {object} BuddyState
 * @property {string} me my username
 * @property {boolean} loaded the list has arrived at least once
 * @property {string[]} groups in the server's order
 * @property {Record<string, Buddy>} buddies by username
 * @property {BuddyRequest[]} incoming requests waiting for my answer
 * @property {BuddyRequest[]} outgoing requests waiting for theirs
 * @property {string[]} folded names of the groups folded shut
 */

/**
 * @typedef {object} GroupView one group as the list shows it
 * @property {string} name
 * @property {boolean} folded
 * @property {number} online
 * @property {number} total
 * @property {Buddy[]} buddies online first, then by name
 */

/** @typedef {"signin" | "signout" | null} Change */

export const DEFAULT_GROUP = "Buddies";
const STATES = new Set(["online", "away", "busy", "offline"]);

/**
 * @param {string} me
 * @param {string[]} [folded]
 * @returns {BuddyState}
 */
export function emptyState(me, folded = []) {
  return { me, loaded: false, groups: [], buddies: {}, incoming: [], outgoing: [], folded };
}

/** @param {Buddy} buddy */
export function isOnline(buddy) {
  return buddy.state !== "offline";
}

/**
 * @param {unknown} state
 * @returns {ShownState}
 */
function shown(state) {
  return typeof state === "string" && STATES.has(state)
    ? /** @type {ShownState} */ (state)
    : "offline";
}

/**
 * @param {string[]} groups
 * @param {Iterable<Buddy>} buddies
 */
function withBuddyGroups(groups, buddies) {
  const out = [...groups];
  for (const buddy of buddies) {
    if (!out.includes(buddy.group)) {
      out.push(buddy.group);
    }
  }
  return out.length ? out : [DEFAULT_GROUP];
}

/**
 * The whole list from the server (first load and every resync); folding is kept.
 * @param {BuddyState} state
 * @param {BuddyList} list
 * @returns {BuddyState}
 */
export function applyList(state, list) {
  /** @type {Record<string, Buddy>} */
  const buddies = {};
  for (const buddy of list.buddies) {
    buddies[buddy.username] = { ...buddy, state: shown(buddy.state), status: buddy.status ?? "" };
  }
  return {
    ...state,
    loaded: true,
    groups: withBuddyGroups(list.groups, Object.values(buddies)),
    buddies,
    incoming: [...list.incoming],
    outgoing: [...list.outgoing],
  };
}

/**
 * A `presence` event. `change` says whether the buddy just signed in or out, as far as
 * I can see (invisible and stealth look like signing out), for the sounds.
 * @param {BuddyState} state
 * @param {{username: string, state: string, status?: string}} presence
 * @returns {{state: BuddyState, change: Change}}
 */
export function applyPresence(state, presence) {
  const old = state.buddies[presence.username];
  if (!old) {
    return { state, change: null };
  }
  const buddy = { ...old, state: shown(presence.state), status: presence.status ?? "" };
  /** @type {Change} */
  let change = null;
  if (!isOnline(old) && isOnline(buddy)) {
    change = "signin";
  } else if (isOnline(old) && !isOnline(buddy)) {
    change = "signout";
  }
  return { state: { ...state, buddies: { ...state.buddies, [buddy.username]: buddy } }, change };
}

/**
 * Add or replace one buddy (its group joins the list of groups if new).
 * @param {BuddyState} state
 * @param {Buddy} buddy
 * @returns {BuddyState}
 */
export function upsertBuddy(state, buddy) {
  const clean = { ...buddy, state: shown(buddy.state), status: buddy.status ?? "" };
  const buddies = { ...state.buddies, [clean.username]: clean };
  return { ...state, buddies, groups: withBuddyGroups(state.groups, [clean]) };
}

/**
 * A buddy from an HTTP answer (accept, move, stealth): its group and stealth are news, but
 * its presence may be older than the events that arrived meanwhile, so a known buddy keeps
 * the presence the events gave it.
 * @param {BuddyState} state
 * @param {Buddy} buddy
 * @returns {BuddyState}
 */
export function mergeBuddy(state, buddy) {
  const known = state.buddies[buddy.username];
  return upsertBuddy(state, known ? { ...buddy, state: known.state, status: known.status } : buddy);
}

/**
 * Forget someone entirely (I blocked them): the buddy and any request between us.
 * @param {BuddyState} state
 * @param {string} username
 * @returns {BuddyState}
 */
export function forget(state, username) {
  const rest = withoutBuddy(state, username);
  return {
    ...rest,
    incoming: rest.incoming.filter((r) => r.from_username !== username),
    outgoing: rest.outgoing.filter((r) => r.to_username !== username),
  };
}

/**
 * @param {BuddyState} state
 * @param {string} username
 * @returns {BuddyState}
 */
export function withoutBuddy(state, username) {
  if (!(username in state.buddies)) {
    return state;
  }
  const buddies = { ...state.buddies };
  delete buddies[username];
  return { ...state, buddies };
}

/**
 * @param {BuddyState} state
 * @param {number} id
 * @returns {BuddyState}
 */
export function withoutRequest(state, id) {
  return {
    ...state,
    incoming: state.incoming.filter((r) => r.id !== id),
    outgoing: state.outgoing.filter((r) => r.id !== id),
  };
}

/**
 * A `buddy.request` event: mine goes to `outgoing`, theirs to `incoming`.
 * @param {BuddyState} state
 * @param {BuddyRequest} request
 * @returns {BuddyState}
 */
export function applyRequest(state, request) {
  const rest = withoutRequest(state, request.id);
  if (request.from_username === state.me) {
    return { ...rest, outgoing: [...rest.outgoing, request] };
  }
  if (request.to_username === state.me) {
    return { ...rest, incoming: [...rest.incoming, request] };
  }
  return state;
}

/**
 * A `buddy.update` event.
 * @param {BuddyState} state
 * @param {{action: string, username: string, buddy?: Buddy | null, request_id?: number | null}} update
 * @returns {BuddyState}
 */
export function applyUpdate(state, update) {
  let next = state;
  if (typeof update.request_id === "number") {
    next = withoutRequest(next, update.request_id);
  }
  switch (update.action) {
    case "added":
      next = {
        ...next,
        incoming: next.incoming.filter((r) => r.from_username !== update.username),
        outgoing: next.outgoing.filter((r) => r.to_username !== update.username),
      };
      return update.buddy ? upsertBuddy(next, update.buddy) : next;
    case "changed":
      return update.buddy ? upsertBuddy(next, update.buddy) : next;
    case "removed":
      return withoutBuddy(next, update.username);
    default: // request_declined, request_cancelled: the request is gone
      return next;
  }
}

/**
 * The groups after a create/rename/delete answered by the server.
 * @param {BuddyState} state
 * @param {string[]} groups
 * @returns {BuddyState}
 */
export function setGroups(state, groups) {
  return { ...state, groups: withBuddyGroups(groups, Object.values(state.buddies)) };
}

/**
 * A group renamed: its buddies and its folding follow.
 * @param {BuddyState} state
 * @param {string} from
 * @param {string} to
 * @param {string[]} groups the server's answer
 * @returns {BuddyState}
 */
export function renameGroup(state, from, to, groups) {
  /** @type {Record<string, Buddy>} */
  const buddies = {};
  for (const [name, buddy] of Object.entries(state.buddies)) {
    buddies[name] = buddy.group === from ? { ...buddy, group: to } : buddy;
  }
  const folded = state.folded.map((g) => (g === from ? to : g));
  return setGroups({ ...state, buddies, folded }, groups);
}

/**
 * A group deleted: its buddies move to the first remaining group (as the server does).
 * @param {BuddyState} state
 * @param {string} name
 * @param {string[]} groups the server's answer
 * @returns {BuddyState}
 */
export function deleteGroup(state, name, groups) {
  const target = groups[0] ?? DEFAULT_GROUP;
  /** @type {Record<string, Buddy>} */
  const buddies = {};
  for (const [username, buddy] of Object.entries(state.buddies)) {
    buddies[username] = buddy.group === name ? { ...buddy, group: target } : buddy;
  }
  const folded = state.folded.filter((g) => g !== name);
  return setGroups({ ...state, buddies, folded }, groups);
}

/**
 * @param {BuddyState} state
 * @param {string} group
 * @returns {BuddyState}
 */
export function toggleFolded(state, group) {
  const folded = state.folded.includes(group)
    ? state.folded.filter((g) => g !== group)
    : [...state.folded, group];
  return { ...state, folded };
}

const collator = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });

/**
 * Online (also away and busy) first, then by display name, then by username.
 * @param {Buddy} a
 * @param {Buddy} b
 */
export function compareBuddies(a, b) {
  return (
    Number(isOnline(b)) - Number(isOnline(a)) ||
    collator.compare(a.display_name || a.username, b.display_name || b.username) ||
    collator.compare(a.username, b.username)
  );
}

/**
 * The groups as the list shows them, in the server's order, each sorted.
 * @param {BuddyState} state
 * @returns {GroupView[]}
 */
export function groupViews(state) {
  const all = Object.values(state.buddies);
  return state.groups.map((name) => {
    const buddies = all.filter((b) => b.group === name).sort(compareBuddies);
    return {
      name,
      folded: state.folded.includes(name),
      online: buddies.filter(isOnline).length,
      total: buddies.length,
      buddies,
    };
  });
}

/**
 * "3/7 online".
 * @param {number} online
 * @param {number} total
 */
export function countText(online, total) {
  return `${online}/${total} online`;
}

/**
 * @param {BuddyState} state
 * @param {string} username
 * @returns {Buddy | undefined}
 */
export function buddyOf(state, username) {
  return state.buddies[username];
}
