"""The HTTP half of the SDK: :class:`EchoChatClient`, bearer tokens and automatic refresh,
the REST calls (accounts, sessions, buddies, blocks, direct messages), and
:meth:`EchoChatClient.connect` for the realtime connection (:mod:`echochat.client._realtime`).

The core is :meth:`EchoChatClient._request`: it adds the bearer token, refreshes it shortly
before it runs out, and when the server still answers 401 ``token_expired`` it refreshes
once (one refresh for all concurrent requests, under a lock) and retries. Later parts of the
SDK (WebSocket, DMs) build on it and on :meth:`EchoChatClient.valid_access_token`.

Tokens live in this object's memory only: nothing is written to disk, no cookie jar is kept,
and neither ``repr()`` nor ``str()`` nor any exception shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from echochat import __version__
from echochat.client._realtime import RealtimeConnection, websocket_url
from echochat.client.errors import (
    AuthError,
    ConflictError,
    EchoChatError,
    NetworkError,
    error_from_response,
)
from echochat.client.models import (
    BlockedUser,
    Buddy,
    BuddyList,
    BuddyRequest,
    Conversation,
    DmSent,
    HistoryPage,
    Me,
    ReceiptKind,
    Session,
    User,
    body,
    parse_blocks,
    parse_buddy,
    parse_buddy_list,
    parse_conversations,
    parse_dm_message,
    parse_groups,
    parse_history,
    parse_me,
    parse_request,
    parse_sessions,
    parse_user,
)

__all__ = ["API_PREFIX", "USER_AGENT", "EchoChatClient"]

API_PREFIX = "/api/v1"
USER_AGENT = f"echochat-sdk/{__version__}"


def _no_cookies() -> CookieJar:
    """A jar that accepts no cookie: the SDK authenticates with bearer tokens only, and a
    stray cookie (the server's CSRF or reset cookie) would turn requests into browser-style
    requests that need a CSRF token."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class EchoChatClient:
    """An async client for one EchoChat server.

    ``transport`` replaces the network (e.g. ``httpx.ASGITransport(app=...)`` in tests);
    ``clock`` (monotonic seconds) and ``refresh_margin`` (seconds before expiry at which the
    access token is renewed ahead of time) are there for tests and tuning.

    Use it as an async context manager, or call :meth:`aclose` when done. Closing does not
    sign out; call :meth:`logout` to end the server-side session.
    """

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        refresh_margin: float = 30.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            transport=transport,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            cookies=_no_cookies(),
            follow_redirects=False,
        )
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._lock = asyncio.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._renew_at = 0.0  # on self._clock: refresh ahead of time from here on
        self._generation = 0  # bumped whenever the tokens change (two JWTs may be equal)
        self._reset_handle: str | None = None
        self._user: User | None = None

    # --- lifecycle and state ---------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (the session stays signed in on the server)."""
        await self._http.aclose()

    def __repr__(self) -> str:
        who = self._user.username if self._user is not None else None
        state = f"signed in as {who!r}" if self._access is not None else "signed out"
        return f"<EchoChatClient {self._base_url} {state}>"

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def access_token(self) -> str | None:
        """The current access token (a JWT), for advanced use such as WebSocket auth.
        It changes on every refresh; prefer :meth:`valid_access_token`."""
        return self._access

    @property
    def refresh_token(self) -> str | None:
        """The current refresh token. Treat it like a password: whoever holds it can keep
        the session alive, and presenting it after it was rotated ends the session."""
        return self._refresh

    @property
    def is_authenticated(self) -> bool:
        """Whether the client holds tokens (the server may still have ended the session)."""
        return self._access is not None

    @property
    def user(self) -> User | None:
        """The user this client signed in as (from the last sign-in or refresh)."""
        return self._user

    async def valid_access_token(self) -> str:
        """The access token, refreshed first if it is about to run out."""
        await self._renew_if_due()
        if self._access is None:
            raise AuthError(401, "not_authenticated", "sign in first")
        return self._access

    # --- accounts and sessions -------------------------------------------------------------

    async def register(
        self,
        username: str,
        password: str,
        *,
        email: str | None = None,
        display_name: str | None = None,
    ) -> User:
        """Create an account and sign in as it."""
        payload: dict[str, Any] = {
            "username": username,
            "password": password,
            "token_response": True,
        }
        if email is not None:
            payload["email"] = email
        if display_name is not None:
            payload["display_name"] = display_name
        return await self._sign_in("/auth/register", payload)

    async def login(self, username: str, password: str) -> User:
        """Sign in with a username (or email address) and password."""
        payload = {"username": username, "password": password, "token_response": True}
        return await self._sign_in("/auth/login", payload)

    async def refresh(self) -> None:
        """Rotate the tokens now (normally automatic). Raises :class:`AuthError` when the
        session has ended (``session_revoked``, ``refresh_invalid``, ``refresh_reused``); the
        client then forgets its tokens."""
        async with self._lock:
            await self._rotate()

    async def logout(self) -> None:
        """End this session on the server and forget the tokens. Works with an expired
        access token; a session that had already ended counts as signed out."""
        token, generation = self._access, self._generation
        if token is None:
            return
        with contextlib.suppress(AuthError):  # a session already over counts as signed out
            await self._send("POST", "/auth/logout", token=token)
        async with self._lock:
            if self._generation == generation:  # not signed in again meanwhile
                self._forget()

    async def me(self) -> Me:
        """The signed-in user, roles, permissions and session id."""
        response = await self._request("GET", "/me")
        return parse_me(body(_json(response), response.status_code))

    async def update_me(self, *, display_name: str | None = None) -> Me:
        """Change the profile (only the fields given) and return it."""
        payload: dict[str, Any] = {}
        if display_name is not None:
            payload["display_name"] = display_name
        response = await self._request("PATCH", "/me", json=payload)
        me = parse_me(body(_json(response), response.status_code))
        self._user = me.user
        return me

    async def sessions(self) -> list[Session]:
        """The user's signed-in devices; ``current`` marks this one."""
        response = await self._request("GET", "/auth/sessions")
        return parse_sessions(_json(response), response.status_code)

    async def revoke_session(self, session_id: str) -> None:
        """Sign out one of the user's devices (``NotFoundError`` if it is not theirs)."""
        await self._request("DELETE", f"/auth/sessions/{quote(session_id, safe='')}")

    async def forgot_password(self, login: str) -> str:
        """Ask for a reset email (link and PIN) for a username or email address. Returns the
        reset handle that a PIN must be presented with; the client also remembers it for
        :meth:`reset_password`. The answer is the same whether or not the account exists."""
        response = await self._send("POST", "/auth/password/forgot", json={"login": login})
        handle = body(_json(response), response.status_code).text("reset_handle")
        self._reset_handle = handle
        return handle

    async def reset_password(
        self,
        password: str,
        *,
        token: str | None = None,
        pin: str | None = None,
        reset_handle: str | None = None,
    ) -> None:
        """Set a new password with the emailed link's ``token``, or with the emailed ``pin``
        plus the handle from :meth:`forgot_password` (the last one, unless given). Every
        session of the user ends, this client's included."""
        if (token is None) == (pin is None):
            raise ValueError("give either the link's token or the PIN")
        payload: dict[str, Any] = {"password": password}
        if token is not None:
            payload["token"] = token
        else:
            handle = reset_handle or self._reset_handle
            if handle is None:
                raise ValueError("a PIN needs the reset handle: call forgot_password() first")
            payload["pin"] = pin
            payload["reset_handle"] = handle
        await self._send("POST", "/auth/password/reset", json=payload)
        if token is None:
            self._reset_handle = None

    # --- buddies and blocks ----------------------------------------------------------------

    async def buddies(self) -> BuddyList:
        """My groups, my buddies with the presence they let me see, and pending requests."""
        response = await self._request("GET", "/buddies")
        return parse_buddy_list(body(_json(response), response.status_code))

    async def request_buddy(
        self, username: str, message: str = "", group: str | None = None
    ) -> BuddyRequest:
        """Ask ``username`` to be buddies (with an optional message, at most 200
        characters); ``group`` is where they go in my list once they accept. If they had
        already asked me, this accepts their request instead. ``NotFoundError``
        ``user_not_found``, ``ConflictError`` ``already_buddies`` / ``blocked``."""
        payload: dict[str, Any] = {"username": username, "message": message}
        if group is not None:
            payload["group"] = group
        response = await self._request("POST", "/buddies/requests", json=payload)
        return parse_request(body(_json(response), response.status_code))

    async def accept_request(self, request_id: int, group: str | None = None) -> Buddy:
        """Accept an incoming request; the new buddy goes to ``group`` (default group if
        ``None``). Returns the new entry of my list."""
        payload: dict[str, Any] = {} if group is None else {"group": group}
        response = await self._request(
            "POST", f"/buddies/requests/{int(request_id)}/accept", json=payload
        )
        return parse_buddy(body(_json(response), response.status_code))

    async def decline_request(self, request_id: int) -> None:
        """Decline an incoming request."""
        await self._request("POST", f"/buddies/requests/{int(request_id)}/decline")

    async def cancel_request(self, request_id: int) -> None:
        """Withdraw a request I sent."""
        await self._request("DELETE", f"/buddies/requests/{int(request_id)}")

    async def update_buddy(
        self, username: str, group: str | None = None, stealth: bool | None = None
    ) -> Buddy:
        """Move a buddy to ``group`` and/or set ``stealth`` (appear offline to them)."""
        payload: dict[str, Any] = {}
        if group is not None:
            payload["group"] = group
        if stealth is not None:
            payload["stealth"] = stealth
        response = await self._request("PATCH", f"/buddies/{_seg(username)}", json=payload)
        return parse_buddy(body(_json(response), response.status_code))

    async def remove_buddy(self, username: str) -> None:
        """End the buddy relationship (for both sides)."""
        await self._request("DELETE", f"/buddies/{_seg(username)}")

    async def create_group(self, name: str) -> tuple[str, ...]:
        """Add an (empty) buddy group; returns all my groups."""
        response = await self._request("POST", "/buddies/groups", json={"name": name})
        return parse_groups(body(_json(response), response.status_code))

    async def rename_group(self, name: str, new_name: str) -> tuple[str, ...]:
        """Rename a group (its buddies stay in it); returns all my groups."""
        response = await self._request(
            "PATCH", f"/buddies/groups/{_seg(name)}", json={"name": new_name}
        )
        return parse_groups(body(_json(response), response.status_code))

    async def delete_group(self, name: str) -> tuple[str, ...]:
        """Delete a group; its buddies move to the first remaining group. Returns all my
        groups."""
        response = await self._request("DELETE", f"/buddies/groups/{_seg(name)}")
        return parse_groups(body(_json(response), response.status_code))

    async def blocks(self) -> list[BlockedUser]:
        """The users I blocked."""
        response = await self._request("GET", "/blocks")
        return parse_blocks(_json(response), response.status_code)

    async def block(self, username: str) -> None:
        """Block ``username``: it ends our buddy relationship and pending requests; they no
        longer see my presence nor reach me, and are not told."""
        await self._request("POST", "/blocks", json={"username": username})

    async def unblock(self, username: str) -> None:
        """Unblock (``NotFoundError`` ``not_blocked`` if they were not blocked)."""
        await self._request("DELETE", f"/blocks/{_seg(username)}")

    # --- direct messages (the envelopes are sealed and opened by echochat.client.e2ee) -------

    async def conversations(self) -> list[Conversation]:
        """Every conversation I have (newest first, as the server orders them), with my
        ``unread`` and ``offline`` counts and the receipt watermarks."""
        response = await self._request("GET", "/conversations")
        return parse_conversations(body(_json(response), response.status_code))

    async def dm_history(
        self,
        username: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        """A page of my conversation with ``username``, ascending ids: the newest page when
        neither ``before`` nor ``after`` is given, else ids below ``before`` / above
        ``after``; at most ``limit`` (server default 50, at most 200). ``NotFoundError``
        ``user_not_found`` for a user who does not exist or blocked me."""
        params: dict[str, str | int] = {}
        if before is not None:
            params["before"] = int(before)
        if after is not None:
            params["after"] = int(after)
        if limit is not None:
            params["limit"] = int(limit)
        response = await self._request(
            "GET", f"/dm/{_seg(username)}/messages", params=params or None
        )
        return parse_history(body(_json(response), response.status_code))

    async def post_dm(self, username: str, envelope: Mapping[str, Any]) -> DmSent:
        """Send a sealed envelope over HTTP (for clients without a socket); like the
        ``dm.send`` op: a retry with the same ``client_id`` returns the original message
        (``duplicate=True``)."""
        response = await self._request(
            "POST", f"/dm/{_seg(username)}/messages", json={"envelope": dict(envelope)}
        )
        message = parse_dm_message(body(_json(response), response.status_code))
        return DmSent(message, duplicate=response.status_code == 200)

    async def dm_receipt(self, username: str, kind: ReceiptKind, upto: int) -> int:
        """Acknowledge ``username``'s messages up to ``upto`` over HTTP (``delivered`` or
        ``read``); the watermark now."""
        response = await self._request(
            "POST", f"/dm/{_seg(username)}/receipts", json={"kind": kind, "upto": int(upto)}
        )
        return body(_json(response), response.status_code).integer("upto")

    # --- realtime ----------------------------------------------------------------------------

    async def connect(
        self,
        *,
        device_id: str | None = None,
        heartbeat: float | None = None,
        reconnect: bool = True,
        reconnect_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
        max_reconnect_attempts: int | None = None,
        open_timeout: float = 10.0,
        request_timeout: float = 10.0,
        compression: bool = True,
        cursor: int | None = None,
        resync_jitter: float | None = None,
    ) -> RealtimeConnection:
        """Open the realtime connection (``ws(s)://<base>/ws``) as the signed-in user and
        return it once the server said hello. See :class:`RealtimeConnection` and
        docs/sdk.md. Needs a real network: an httpx ``transport`` given to this client is
        not used for the WebSocket. ``cursor`` resumes from a message id kept from an earlier
        connection: the server replays what came after it. ``resync_jitter``: the most
        seconds to wait, at random, before resuming after a ``bus`` resync (default
        ``RESYNC_JITTER``, 3 s; 0: at once)."""
        connection = RealtimeConnection(
            self,
            websocket_url(self._base_url),
            device_id=device_id,
            heartbeat=heartbeat,
            reconnect=reconnect,
            reconnect_delay=reconnect_delay,
            reconnect_max_delay=reconnect_max_delay,
            max_reconnect_attempts=max_reconnect_attempts,
            open_timeout=open_timeout,
            request_timeout=request_timeout,
            user_agent=USER_AGENT,
            compression=compression,
            cursor=cursor,
            resync_jitter=resync_jitter,
        )
        await connection.open()
        return connection

    # --- the HTTP core ---------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        """An authenticated request under ``/api/v1``: the token is renewed ahead of time,
        and a 401 ``token_expired`` answer triggers one refresh and one retry. Raises
        :class:`EchoChatError` (a subclass per status) for any error answer."""
        await self._renew_if_due()
        token, generation = self._access, self._generation
        response = await self._send(
            method, path, json=json, params=params, token=token, check=False
        )
        if token is not None and _error_code(response) == "token_expired":
            race = await self._refresh_after_expiry(generation)
            response = await self._send(
                method, path, json=json, params=params, token=self._access, check=False
            )
            if race is not None and _error_code(response) == "token_expired":
                raise race  # our refresh token was rotated elsewhere; say so, not "expired"
        if response.is_error:
            raise error_from_response(response)
        return response

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        token: str | None = None,
        check: bool = True,
    ) -> httpx.Response:
        """One request, no retry. ``check`` raises for error answers."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        try:
            response = await self._http.request(
                method, API_PREFIX + path, json=json, params=params, headers=headers
            )
        except httpx.TransportError as exc:
            detail = str(exc) or "no answer"
            raise NetworkError(0, "network_error", f"{type(exc).__name__}: {detail}") from exc
        if check and response.is_error:
            raise error_from_response(response)
        return response

    async def _sign_in(self, path: str, payload: Mapping[str, Any]) -> User:
        started = self._clock()
        response = await self._send("POST", path, json=payload)
        async with self._lock:
            return self._keep_tokens(response, started)

    def _keep_tokens(self, response: httpx.Response, started: float) -> User:
        data = body(_json(response), response.status_code)
        access, refresh = data.text("access_token"), data.text("refresh_token")
        expires_in = data.integer("expires_in")
        user = parse_user(data.obj("user"))
        margin = min(self._refresh_margin, expires_in / 4)
        self._access, self._refresh, self._user = access, refresh, user
        self._renew_at = started + expires_in - margin
        self._generation += 1
        return user

    def _forget(self) -> None:
        self._access = self._refresh = None
        self._user = None
        self._renew_at = 0.0
        self._generation += 1

    async def _rotate(self) -> None:
        """POST /auth/refresh with the current refresh token (call holding the lock)."""
        if self._refresh is None:
            raise AuthError(401, "not_authenticated", "sign in first")
        started = self._clock()
        response = await self._send(
            "POST", "/auth/refresh", json={"refresh_token": self._refresh}, check=False
        )
        if response.is_error:
            error = error_from_response(response)
            if error.status in (401, 403):  # the session is over (or the user is banned)
                self._forget()
            raise error
        self._keep_tokens(response, started)

    async def _renew_if_due(self) -> None:
        """Refresh ahead of time when the access token is about to run out."""
        if self._refresh is None or self._clock() < self._renew_at:
            return
        async with self._lock:
            if self._refresh is None or self._clock() < self._renew_at:
                return  # another task renewed it while this one waited
            try:
                await self._rotate()
            except ConflictError as exc:
                if exc.code != "refresh_race":
                    raise
                # Rotated elsewhere a moment ago: carry on with the token we hold.

    async def _refresh_after_expiry(self, generation: int) -> ConflictError | None:
        """After a 401 ``token_expired`` for the tokens of ``generation``: refresh, unless
        another task already did. Returns the 409 ``refresh_race`` error if the refresh token
        had just been rotated elsewhere (the caller retries with the current token anyway)."""
        async with self._lock:
            if self._generation != generation:
                return None  # already refreshed (or signed out) by another task
            try:
                await self._rotate()
            except ConflictError as exc:
                if exc.code != "refresh_race":
                    raise
                return exc
        return None


def _seg(value: str) -> str:
    """``value`` as one path segment (``/`` and everything else percent-encoded)."""
    return quote(value, safe="")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise EchoChatError(
            response.status_code, "bad_response", "the server did not answer with JSON"
        ) from exc


def _error_code(response: httpx.Response) -> str | None:
    if response.status_code != 401:
        return None
    return error_from_response(response).code
