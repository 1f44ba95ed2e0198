"""Buddy lists over HTTP (ARCHITECTURE section 4, issue 4): requests with authorization,
groups, stealth, removal and blocks, against the real app on SQLite, as bearer clients.

Policy under test (``services/buddies.py``): a request needs the other side's acceptance;
a mutual request accepts; blocking ends the relation and pending requests, and a blocked
user is never told: their request looks sent but never reaches the blocker.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.wsutil import API, User, cookieless, expect_error, register

# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def api(client: httpx.AsyncClient) -> httpx.AsyncClient:
    return cookieless(client)


@pytest.fixture
async def alice(api: httpx.AsyncClient) -> User:
    return await register(api, "alice")


@pytest.fixture
async def bob(api: httpx.AsyncClient) -> User:
    return await register(api, "bob")


@pytest.fixture
async def carol(api: httpx.AsyncClient) -> User:
    return await register(api, "carol")


async def ask(api: httpx.AsyncClient, who: User, username: str, **body: Any) -> httpx.Response:
    return await api.post(
        f"{API}/buddies/requests", json={"username": username, **body}, headers=who.headers
    )


async def asked(api: httpx.AsyncClient, who: User, other: User, **body: Any) -> dict[str, Any]:
    """``who`` asks ``other``; the request (201)."""
    response = await ask(api, who, other.username, **body)
    assert response.status_code == 201, response.text
    request: dict[str, Any] = response.json()
    return request


async def accept(api: httpx.AsyncClient, who: User, request_id: int, **body: Any) -> httpx.Response:
    return await api.post(
        f"{API}/buddies/requests/{request_id}/accept",
        json=body or None,
        headers=who.headers,
    )


async def decline(api: httpx.AsyncClient, who: User, request_id: int) -> httpx.Response:
    return await api.post(f"{API}/buddies/requests/{request_id}/decline", headers=who.headers)


async def cancel(api: httpx.AsyncClient, who: User, request_id: int) -> httpx.Response:
    return await api.delete(f"{API}/buddies/requests/{request_id}", headers=who.headers)


async def befriend(api: httpx.AsyncClient, a: User, b: User) -> None:
    request = await asked(api, a, b)
    response = await accept(api, b, request["id"])
    assert response.status_code == 200, response.text


async def listing(api: httpx.AsyncClient, who: User) -> dict[str, Any]:
    response = await api.get(f"{API}/buddies", headers=who.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"groups", "buddies", "incoming", "outgoing"}
    return body


def names(buddies: list[dict[str, Any]]) -> list[str]:
    return [b["username"] for b in buddies]


def ids(requests: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in requests]


async def block(api: httpx.AsyncClient, who: User, username: str) -> httpx.Response:
    return await api.post(f"{API}/blocks", json={"username": username}, headers=who.headers)


async def patch(api: httpx.AsyncClient, who: User, username: str, **body: Any) -> httpx.Response:
    return await api.patch(f"{API}/buddies/{username}", json=body, headers=who.headers)


async def groups(api: httpx.AsyncClient, who: User) -> list[str]:
    result: list[str] = (await listing(api, who))["groups"]
    return result


async def new_group(api: httpx.AsyncClient, who: User, name: str) -> list[str]:
    response = await api.post(f"{API}/buddies/groups", json={"name": name}, headers=who.headers)
    assert response.status_code == 201, response.text
    result: list[str] = response.json()["groups"]
    return result


# --- the empty list ---------------------------------------------------------------------------


async def test_a_new_user_has_an_empty_list_with_the_default_group(
    api: httpx.AsyncClient, alice: User
) -> None:
    assert await listing(api, alice) == {
        "groups": ["Buddies"],
        "buddies": [],
        "incoming": [],
        "outgoing": [],
    }


# --- requests ---------------------------------------------------------------------------------


async def test_request_appears_on_both_sides(
    api: httpx.AsyncClient, alice: User, bob: User, carol: User
) -> None:
    request = await asked(api, alice, bob, message="  hi Bob, it's Alice  ")
    assert set(request) == {
        "id",
        "from_username",
        "from_display_name",
        "to_username",
        "message",
        "created_at",
    }
    assert request["from_username"] == "alice"
    assert request["to_username"] == "bob"
    assert request["message"] == "hi Bob, it's Alice"
    assert request["from_display_name"]

    mine, theirs, other = (
        await listing(api, alice),
        await listing(api, bob),
        await listing(api, carol),
    )
    assert mine["outgoing"] == [request] and mine["incoming"] == []
    assert theirs["incoming"] == [request] and theirs["outgoing"] == []
    assert mine["buddies"] == theirs["buddies"] == []
    assert other == {"groups": ["Buddies"], "buddies": [], "incoming": [], "outgoing": []}


async def test_request_by_username_ignores_case_and_spaces(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    response = await ask(api, alice, "  BoB ")
    assert response.status_code == 201, response.text
    assert response.json()["to_username"] == "bob"


async def test_accept_makes_buddies_on_both_sides(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    request = await asked(api, alice, bob, group="Friends")
    response = await accept(api, bob, request["id"], group="Work")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "username": "alice",
        "display_name": response.json()["display_name"],
        "group": "Work",
        "stealth": False,
        "state": "offline",
        "status": "",
    }

    mine, theirs = await listing(api, alice), await listing(api, bob)
    assert names(mine["buddies"]) == ["bob"]
    assert mine["buddies"][0]["group"] == "Friends"  # the group the asker chose
    assert names(theirs["buddies"]) == ["alice"]
    assert theirs["buddies"][0]["group"] == "Work"  # the group the accepter chose
    assert "Friends" in mine["groups"]
    assert "Work" in theirs["groups"]
    for side in (mine, theirs):
        assert side["incoming"] == side["outgoing"] == []
        (buddy,) = side["buddies"]
        assert buddy["state"] == "offline"  # nobody is connected
        assert buddy["stealth"] is False

    # accepting twice: no longer pending
    expect_error(await accept(api, bob, request["id"]), 404, "request_not_found")


async def test_accept_without_a_body_uses_the_default_group(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    request = await asked(api, alice, bob)
    response = await api.post(f"{API}/buddies/requests/{request['id']}/accept", headers=bob.headers)
    assert response.status_code == 200, response.text
    assert response.json()["group"] == "Buddies"
    assert (await listing(api, alice))["buddies"][0]["group"] == "Buddies"


async def test_decline_ends_the_request_and_allows_a_new_one(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    request = await asked(api, alice, bob)
    response = await decline(api, bob, request["id"])
    assert response.status_code == 204, response.text
    assert response.content == b""
    for who in (alice, bob):
        side = await listing(api, who)
        assert side["buddies"] == side["incoming"] == side["outgoing"] == []
    expect_error(await accept(api, bob, request["id"]), 404, "request_not_found")
    expect_error(await decline(api, bob, request["id"]), 404, "request_not_found")
    again = await asked(api, alice, bob)
    assert again["id"] != request["id"]
    assert ids((await listing(api, bob))["incoming"]) == [again["id"]]


async def test_cancel_withdraws_my_request(api: httpx.AsyncClient, alice: User, bob: User) -> None:
    request = await asked(api, alice, bob)
    response = await cancel(api, alice, request["id"])
    assert response.status_code == 204, response.text
    for who in (alice, bob):
        side = await listing(api, who)
        assert side["incoming"] == side["outgoing"] == []
    expect_error(await accept(api, bob, request["id"]), 404, "request_not_found")
    expect_error(await cancel(api, alice, request["id"]), 404, "request_not_found")


async def test_mutual_requests_accept_each_other(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    first = await asked(api, alice, bob)
    second = await asked(api, bob, alice, group="Pals")
    assert second["id"] == first["id"]  # bob's "request" accepted alice's
    mine, theirs = await listing(api, alice), await listing(api, bob)
    assert names(mine["buddies"]) == ["bob"]
    assert names(theirs["buddies"]) == ["alice"]
    assert theirs["buddies"][0]["group"] == "Pals"
    for side in (mine, theirs):
        assert side["incoming"] == side["outgoing"] == []


async def test_request_to_self_is_refused(api: httpx.AsyncClient, alice: User) -> None:
    expect_error(await ask(api, alice, "alice"), 422, "cannot_add_self")
    expect_error(await ask(api, alice, "ALICE"), 422, "cannot_add_self")


async def test_request_to_an_unknown_user_is_not_found(api: httpx.AsyncClient, alice: User) -> None:
    expect_error(await ask(api, alice, "nobody"), 404, "user_not_found")


async def test_request_to_a_buddy_conflicts(api: httpx.AsyncClient, alice: User, bob: User) -> None:
    await befriend(api, alice, bob)
    expect_error(await ask(api, alice, "bob"), 409, "already_buddies")
    expect_error(await ask(api, bob, "alice"), 409, "already_buddies")


async def test_a_repeated_request_returns_the_pending_one(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    first = await asked(api, alice, bob, message="one")
    second = await asked(api, alice, bob, message="two")
    assert second == first
    assert ids((await listing(api, bob))["incoming"]) == [first["id"]]
    assert ids((await listing(api, alice))["outgoing"]) == [first["id"]]


async def test_request_message_is_at_most_200_characters(
    api: httpx.AsyncClient, alice: User, bob: User, carol: User
) -> None:
    error = expect_error(await ask(api, alice, "bob", message="m" * 201), 422, "message_too_long")
    assert error["details"] == {"field": "message"}
    expect_error(await ask(api, alice, "bob", message="m" * 2000), 422, "invalid_input")
    assert (await listing(api, bob))["incoming"] == []
    ok = await asked(api, alice, carol, message="😀" * 200)  # characters, not bytes
    assert ok["message"] == "😀" * 200


# --- groups -------------------------------------------------------------------------------------


async def test_create_rename_and_delete_groups(api: httpx.AsyncClient, alice: User) -> None:
    assert await new_group(api, alice, "Work") == ["Work"]
    assert await new_group(api, alice, "  Family ") == ["Work", "Family"]
    assert await new_group(api, alice, "Work") == ["Work", "Family"]  # creating twice: no-op
    assert await groups(api, alice) == ["Work", "Family"]

    renamed = await api.patch(
        f"{API}/buddies/groups/Work", json={"name": "Office"}, headers=alice.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json() == {"groups": ["Office", "Family"]}

    clash = await api.patch(
        f"{API}/buddies/groups/Office", json={"name": "Family"}, headers=alice.headers
    )
    expect_error(clash, 409, "group_exists")
    missing = await api.patch(
        f"{API}/buddies/groups/Nope", json={"name": "Other"}, headers=alice.headers
    )
    expect_error(missing, 404, "group_not_found")

    deleted = await api.delete(f"{API}/buddies/groups/Office", headers=alice.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"groups": ["Family"]}
    gone = await api.delete(f"{API}/buddies/groups/Office", headers=alice.headers)
    expect_error(gone, 404, "group_not_found")


async def test_renaming_a_group_keeps_its_buddies(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    await befriend(api, alice, bob)
    moved = await patch(api, alice, "bob", group="Work")
    assert moved.status_code == 200, moved.text
    response = await api.patch(
        f"{API}/buddies/groups/Work", json={"name": "Office"}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    side = await listing(api, alice)
    assert side["buddies"][0]["group"] == "Office"
    assert "Work" not in side["groups"]


async def test_deleting_a_group_moves_its_buddies(
    api: httpx.AsyncClient, alice: User, bob: User, carol: User
) -> None:
    await befriend(api, alice, bob)
    await befriend(api, alice, carol)
    await new_group(api, alice, "Work")
    assert (await patch(api, alice, "bob", group="Work")).status_code == 200
    assert (await patch(api, alice, "carol", group="Work")).status_code == 200
    response = await api.delete(f"{API}/buddies/groups/Work", headers=alice.headers)
    assert response.status_code == 200, response.text
    assert "Work" not in response.json()["groups"]
    side = await listing(api, alice)
    assert sorted(names(side["buddies"])) == ["bob", "carol"]  # nobody lost
    assert {b["group"] for b in side["buddies"]} == {"Buddies"}
    assert "Work" not in side["groups"]
    # the other side's grouping is theirs alone
    assert (await listing(api, bob))["buddies"][0]["group"] == "Buddies"


async def test_deleting_the_last_group_keeps_the_buddies(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    await befriend(api, alice, bob)
    assert await groups(api, alice) == ["Buddies"]
    response = await api.delete(f"{API}/buddies/groups/Buddies", headers=alice.headers)
    assert response.status_code == 200, response.text
    side = await listing(api, alice)
    assert names(side["buddies"]) == ["bob"]
    assert side["buddies"][0]["group"] in side["groups"]


async def test_move_a_buddy_between_groups(api: httpx.AsyncClient, alice: User, bob: User) -> None:
    await befriend(api, alice, bob)
    response = await patch(api, alice, "bob", group="Work")
    assert response.status_code == 200, response.text
    assert response.json()["group"] == "Work"
    assert response.json()["username"] == "bob"
    side = await listing(api, alice)
    assert side["buddies"][0]["group"] == "Work"
    assert "Work" in side["groups"]  # created on the way
    response = await patch(api, alice, "bob", group="Buddies")
    assert response.json()["group"] == "Buddies"
    assert (await listing(api, alice))["buddies"][0]["group"] == "Buddies"
    assert (await listing(api, bob))["buddies"][0]["group"] == "Buddies"  # untouched


@pytest.mark.parametrize(
    "name",
    ["x" * 41, "a/b"],
    ids=["too-long", "slash"],
)
async def test_bad_group_names_are_refused(api: httpx.AsyncClient, alice: User, name: str) -> None:
    response = await api.post(f"{API}/buddies/groups", json={"name": name}, headers=alice.headers)
    expect_error(response, 422, "invalid_group")
    assert await groups(api, alice) == ["Buddies"]


@pytest.mark.parametrize(
    ("name", "stored"),
    [("tab\there", "tab here"), ("nul\x00", "nul"), ("  Work  ", "Work")],
    ids=["tab-becomes-space", "control-dropped", "trimmed"],
)
async def test_group_names_are_cleaned_to_one_line_of_text(
    api: httpx.AsyncClient, alice: User, name: str, stored: str
) -> None:
    response = await api.post(f"{API}/buddies/groups", json={"name": name}, headers=alice.headers)
    assert response.status_code == 201, response.text
    assert stored in await groups(api, alice)


async def test_a_group_that_was_created_can_be_deleted(api: httpx.AsyncClient, alice: User) -> None:
    created = await api.post(
        f"{API}/buddies/groups", json={"name": "Work/Play"}, headers=alice.headers
    )
    if created.status_code == 422:  # refusing the name up front is a fine answer too
        return
    assert created.status_code == 201, created.text
    response = await api.delete(f"{API}/buddies/groups/Work%2FPlay", headers=alice.headers)
    assert response.status_code == 200, response.text
    assert "Work/Play" not in response.json()["groups"]


# --- stealth ------------------------------------------------------------------------------------


async def test_stealth_is_per_buddy(
    api: httpx.AsyncClient, alice: User, bob: User, carol: User
) -> None:
    await befriend(api, alice, bob)
    await befriend(api, alice, carol)
    response = await patch(api, alice, "bob", stealth=True)
    assert response.status_code == 200, response.text
    assert response.json()["stealth"] is True
    side = {b["username"]: b for b in (await listing(api, alice))["buddies"]}
    assert side["bob"]["stealth"] is True
    assert side["carol"]["stealth"] is False
    # the flag is alice's setting: bob's row about alice is unchanged
    assert (await listing(api, bob))["buddies"][0]["stealth"] is False
    response = await patch(api, alice, "bob", stealth=False)
    assert response.json()["stealth"] is False


async def test_patch_keeps_what_it_does_not_name(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    await befriend(api, alice, bob)
    await patch(api, alice, "bob", group="Work", stealth=True)
    response = await patch(api, alice, "bob")
    assert response.status_code == 200, response.text
    assert response.json()["group"] == "Work"
    assert response.json()["stealth"] is True


async def test_patch_of_someone_who_is_not_a_buddy(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    expect_error(await patch(api, alice, "bob", stealth=True), 404, "not_a_buddy")
    expect_error(await patch(api, alice, "nobody", stealth=True), 404, "user_not_found")


# --- removal ------------------------------------------------------------------------------------


async def test_remove_ends_the_relation_on_both_sides(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    await befriend(api, alice, bob)
    response = await api.delete(f"{API}/buddies/bob", headers=alice.headers)
    assert response.status_code == 204, response.text
    assert (await listing(api, alice))["buddies"] == []
    assert (await listing(api, bob))["buddies"] == []
    again = await api.delete(f"{API}/buddies/bob", headers=alice.headers)
    expect_error(again, 404, "not_a_buddy")
    back = await api.delete(f"{API}/buddies/alice", headers=bob.headers)
    expect_error(back, 404, "not_a_buddy")
    # and they may become buddies again
    await befriend(api, bob, alice)
    assert names((await listing(api, alice))["buddies"]) == ["bob"]


# --- blocks -------------------------------------------------------------------------------------


async def test_block_ends_the_relation(api: httpx.AsyncClient, alice: User, bob: User) -> None:
    await befriend(api, alice, bob)
    response = await block(api, alice, "bob")
    assert response.status_code == 204, response.text
    assert (await listing(api, alice))["buddies"] == []
    assert (await listing(api, bob))["buddies"] == []
    blocked = await api.get(f"{API}/blocks", headers=alice.headers)
    assert blocked.status_code == 200
    assert [b["username"] for b in blocked.json()] == ["bob"]
    assert set(blocked.json()[0]) == {"username", "display_name"}
    # the blocked side has no list of who blocked them
    assert (await api.get(f"{API}/blocks", headers=bob.headers)).json() == []
    # blocking twice changes nothing
    assert (await block(api, alice, "bob")).status_code == 204
    assert len((await api.get(f"{API}/blocks", headers=alice.headers)).json()) == 1


async def test_block_cancels_pending_requests_both_ways(
    api: httpx.AsyncClient, alice: User, bob: User, carol: User
) -> None:
    from_bob = await asked(api, bob, alice)
    to_carol = await asked(api, alice, carol)
    assert (await block(api, alice, "bob")).status_code == 204
    assert (await listing(api, alice))["incoming"] == []
    assert (await listing(api, bob))["outgoing"] == []
    expect_error(await accept(api, alice, from_bob["id"]), 404, "request_not_found")
    # a request to someone else is untouched
    assert ids((await listing(api, alice))["outgoing"]) == [to_carol["id"]]

    # the other direction: alice asked bob, then bob blocks alice
    assert (await api.delete(f"{API}/blocks/bob", headers=alice.headers)).status_code == 204
    from_alice = await asked(api, alice, bob)
    assert (await block(api, bob, "alice")).status_code == 204
    assert ids((await listing(api, alice))["outgoing"]) == [to_carol["id"]]
    assert (await listing(api, bob))["incoming"] == []
    expect_error(await accept(api, bob, from_alice["id"]), 404, "request_not_found")


async def test_a_blocked_users_request_looks_sent_but_never_arrives(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    assert (await block(api, alice, "bob")).status_code == 204
    request = await asked(api, bob, alice, message="please?")  # 201: bob is not told
    assert request["to_username"] == "alice"
    assert ids((await listing(api, bob))["outgoing"]) == [request["id"]]
    assert (await listing(api, alice))["incoming"] == []
    # alice cannot act on it either: for her it does not exist
    expect_error(await accept(api, alice, request["id"]), 404, "request_not_found")
    expect_error(await decline(api, alice, request["id"]), 404, "request_not_found")
    # asking again answers the same request, still unseen
    assert await asked(api, bob, alice) == request
    assert (await listing(api, alice))["incoming"] == []
    # bob may withdraw it as if it were real
    assert (await cancel(api, bob, request["id"])).status_code == 204
    assert (await listing(api, bob))["outgoing"] == []


async def test_the_blocker_cannot_request_the_blocked(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    assert (await block(api, alice, "bob")).status_code == 204
    expect_error(await ask(api, alice, "bob"), 409, "blocked")
    assert (await listing(api, bob))["incoming"] == []


async def test_unblock(api: httpx.AsyncClient, alice: User, bob: User) -> None:
    assert (await block(api, alice, "bob")).status_code == 204
    response = await api.delete(f"{API}/blocks/bob", headers=alice.headers)
    assert response.status_code == 204, response.text
    assert (await api.get(f"{API}/blocks", headers=alice.headers)).json() == []
    again = await api.delete(f"{API}/blocks/bob", headers=alice.headers)
    expect_error(again, 404, "not_blocked")
    # normal relations again, both ways
    request = await asked(api, bob, alice)
    assert ids((await listing(api, alice))["incoming"]) == [request["id"]]
    assert (await accept(api, alice, request["id"])).status_code == 200
    assert names((await listing(api, alice))["buddies"]) == ["bob"]


async def test_after_unblock_the_blocker_can_request_the_user_who_asked_while_blocked(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    assert (await block(api, alice, "bob")).status_code == 204
    await asked(api, bob, alice)  # hidden
    assert (await api.delete(f"{API}/blocks/bob", headers=alice.headers)).status_code == 204
    response = await ask(api, alice, "bob")
    assert response.status_code == 201, response.text


async def test_after_unblock_a_new_request_reaches_the_unblocker(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    assert (await block(api, alice, "bob")).status_code == 204
    await asked(api, bob, alice)  # hidden
    assert (await api.delete(f"{API}/blocks/bob", headers=alice.headers)).status_code == 204
    await asked(api, bob, alice)
    assert len((await listing(api, alice))["incoming"]) == 1


async def test_block_self_and_unknown(api: httpx.AsyncClient, alice: User) -> None:
    expect_error(await block(api, alice, "alice"), 422, "cannot_block_self")
    expect_error(await block(api, alice, "nobody"), 404, "user_not_found")
    expect_error(
        await api.delete(f"{API}/blocks/nobody", headers=alice.headers), 404, "user_not_found"
    )


# --- other people's requests ------------------------------------------------------------------


async def test_someone_elses_request_is_not_found(
    api: httpx.AsyncClient, alice: User, bob: User, carol: User
) -> None:
    request = await asked(api, alice, bob)
    rid = request["id"]
    # a stranger
    expect_error(await accept(api, carol, rid), 404, "request_not_found")
    expect_error(await decline(api, carol, rid), 404, "request_not_found")
    expect_error(await cancel(api, carol, rid), 404, "request_not_found")
    # the sender cannot accept or decline their own request
    expect_error(await accept(api, alice, rid), 404, "request_not_found")
    expect_error(await decline(api, alice, rid), 404, "request_not_found")
    # the receiver cannot cancel it (they decline)
    expect_error(await cancel(api, bob, rid), 404, "request_not_found")
    # a request that does not exist
    expect_error(await accept(api, bob, rid + 1000), 404, "request_not_found")
    # still pending, untouched
    assert ids((await listing(api, bob))["incoming"]) == [rid]


@pytest.mark.parametrize("bad_id", ["0", "-1", "abc", str(2**63)])
async def test_malformed_request_ids(api: httpx.AsyncClient, alice: User, bad_id: str) -> None:
    for response in (
        await api.post(f"{API}/buddies/requests/{bad_id}/accept", headers=alice.headers),
        await api.post(f"{API}/buddies/requests/{bad_id}/decline", headers=alice.headers),
        await api.delete(f"{API}/buddies/requests/{bad_id}", headers=alice.headers),
    ):
        expect_error(response, 422, "invalid_input")


# --- authentication and validation ------------------------------------------------------------

ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/buddies", None),
    ("POST", "/buddies/requests", {"username": "bob"}),
    ("POST", "/buddies/requests/1/accept", None),
    ("POST", "/buddies/requests/1/decline", None),
    ("DELETE", "/buddies/requests/1", None),
    ("PATCH", "/buddies/bob", {"stealth": True}),
    ("DELETE", "/buddies/bob", None),
    ("POST", "/buddies/groups", {"name": "Work"}),
    ("PATCH", "/buddies/groups/Work", {"name": "Office"}),
    ("DELETE", "/buddies/groups/Work", None),
    ("GET", "/blocks", None),
    ("POST", "/blocks", {"username": "bob"}),
    ("DELETE", "/blocks/bob", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_every_endpoint_needs_authentication(
    api: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    anonymous = await api.request(method, API + path, json=body)
    expect_error(anonymous, 401, "not_authenticated")
    forged = await api.request(
        method, API + path, json=body, headers={"Authorization": "Bearer not.a.token"}
    )
    expect_error(forged, 401, "token_invalid")


async def test_a_signed_out_session_is_refused(
    api: httpx.AsyncClient, alice: User, bob: User
) -> None:
    out = await api.post(f"{API}/auth/logout", headers=alice.headers)
    assert out.status_code == 204, out.text
    api.cookies.clear()
    expect_error(await api.get(f"{API}/buddies", headers=alice.headers), 401, "session_revoked")
    expect_error(await ask(api, alice, "bob"), 401, "session_revoked")


MALFORMED: list[tuple[str, str, Any]] = [
    ("POST", "/buddies/requests", {}),
    ("POST", "/buddies/requests", {"username": ""}),
    ("POST", "/buddies/requests", {"username": 42}),
    ("POST", "/buddies/requests", {"username": "bob", "message": ["hi"]}),
    ("POST", "/buddies/requests", {"username": "bob", "extra": 1}),
    ("POST", "/buddies/requests", {"username": "b" * 65}),
    ("POST", "/buddies/requests", [1, 2]),
    ("POST", "/buddies/requests", "bob"),
    ("POST", "/buddies/requests/1/accept", {"group": 5}),
    ("POST", "/buddies/requests/1/accept", {"grop": "x"}),
    ("PATCH", "/buddies/bob", {"stealth": "perhaps"}),
    ("PATCH", "/buddies/bob", {"group": {"name": "x"}}),
    ("PATCH", "/buddies/bob", {"colour": "red"}),
    ("POST", "/buddies/groups", {}),
    ("POST", "/buddies/groups", {"name": ""}),
    ("POST", "/buddies/groups", {"name": None}),
    ("PATCH", "/buddies/groups/Work", {"name": 3}),
    ("POST", "/blocks", {}),
    ("POST", "/blocks", {"username": None}),
]


async def test_malformed_bodies_are_422(api: httpx.AsyncClient, alice: User) -> None:
    # One user for every case: argon2 makes each registration cost a few tenths of a second.
    for method, path, body in MALFORMED:
        response = await api.request(method, API + path, json=body, headers=alice.headers)
        assert response.status_code == 422, (method, path, body, response.text)
        expect_error(response, 422, "invalid_input")
    assert await listing(api, alice) == {
        "groups": ["Buddies"],
        "buddies": [],
        "incoming": [],
        "outgoing": [],
    }


async def test_body_that_is_not_json(api: httpx.AsyncClient, alice: User) -> None:
    broken = await api.post(
        f"{API}/buddies/requests",
        content=b'{"username": ',
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    expect_error(broken, 422, "invalid_input")
    form = await api.post(
        f"{API}/buddies/requests", data={"username": "bob"}, headers=alice.headers
    )
    assert form.status_code == 415, form.text
