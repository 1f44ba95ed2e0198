"""The E2EE key directory and key backup over HTTP (``/api/v1/keys``, issue 5), and the SDK's
E2EE helpers end to end against the real app on SQLite (httpx.ASGITransport).

Policy under test (``services/keys.py``): a device is published with the identity key's
signature on its statement; the first device sets the identity key, which changes only by an
explicit reset (removing every device, audited); a device's keys never change; at most 20
devices; a user who blocked you is "not found"; the backup is a compare-and-set, its
downloads rate-limited per account. The end-to-end tests show that the server only ever
holds what it cannot read: tampering with anything it stores is caught by the recipient.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from echochat.app import create_app
from echochat.client import ConflictError, EchoChatClient, NotFoundError, e2ee
from echochat.client.e2ee import E2EEError, Keyring, PublicDevice, open_envelope, seal_dm
from echochat.config import ResolvedSettings
from echochat.domain.e2ee import b64d, b64e
from echochat.services.context import Context
from echochat.store import keys as key_store
from echochat.store import users as user_store
from echochat.store.tables import audit_log
from tests.apps import running
from tests.wsutil import API, PASSWORD, User, cookieless, expect_error, register

PASSPHRASE = "lantern-orchard-copper-91"

# --- the app, users and helpers ----------------------------------------------------------------


@dataclass
class Site:
    ctx: Context
    http: httpx.AsyncClient
    transport: httpx.AsyncBaseTransport
    url: str
    sdks: list[EchoChatClient] = field(default_factory=list)

    def sdk(self) -> EchoChatClient:
        client = EchoChatClient(self.url, transport=self.transport)
        self.sdks.append(client)
        return client

    async def audit(self, action: str) -> list[dict[str, Any]]:
        async with self.ctx.db.read() as conn:
            rows = await conn.execute(
                select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)
            )
            return [dict(row._mapping) for row in rows]


Start = Callable[..., AbstractAsyncContextManager[Site]]


@pytest.fixture
def start(make_settings: Callable[..., ResolvedSettings]) -> Start:
    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[Site]:
        settings = make_settings(**overrides).settings
        app = create_app(settings)
        async with running(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
                site = Site(app.state.ctx, cookieless(http), transport, settings.public_url)
                try:
                    yield site
                finally:
                    for sdk in site.sdks:
                        await sdk.aclose()

    return run


@pytest.fixture
async def site(start: Start) -> AsyncIterator[Site]:
    async with start() as running:
        yield running


@pytest.fixture
async def alice(site: Site) -> User:
    return await register(site.http, "alice")


@pytest.fixture
async def bob(site: Site) -> User:
    return await register(site.http, "bob")


def device_body(ring: Keyring, username: str, device_id: str, **extra: Any) -> dict[str, Any]:
    if device_id not in ring.devices:
        ring.add_device(device_id)
    return {**ring.published_device(username, device_id), **extra}


async def put_device(site: Site, who: User, device_id: str, body: dict[str, Any]) -> httpx.Response:
    return await site.http.put(f"{API}/keys/devices/{device_id}", json=body, headers=who.headers)


async def publish(site: Site, who: User, ring: Keyring, device_id: str) -> dict[str, Any]:
    response = await put_device(site, who, device_id, device_body(ring, who.username, device_id))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def keys_of(site: Site, who: User, username: str) -> httpx.Response:
    return await site.http.get(f"{API}/keys/users/{username}", headers=who.headers)


async def put_backup(
    site: Site, who: User, blob: str, expected_version: int | None = None
) -> httpx.Response:
    return await site.http.put(
        f"{API}/keys/backup",
        json={"blob": blob, "expected_version": expected_version},
        headers=who.headers,
    )


# --- publishing devices ------------------------------------------------------------------------


async def test_publish_device_then_idempotent(site: Site, alice: User) -> None:
    ring = Keyring.generate()
    body = device_body(ring, "alice", "alice-laptop-1", label="Laptop")
    first = await put_device(site, alice, "alice-laptop-1", body)
    assert first.status_code == 201, first.text
    data = first.json()
    assert data["username"] == "alice" and data["identity_key"] == b64e(ring.identity_key)
    (device,) = data["devices"]
    assert device["device_id"] == "alice-laptop-1" and device["label"] == "Laptop"
    assert {device[k] for k in ("x25519", "ed25519", "signature")} == {
        body["x25519"],
        body["ed25519"],
        body["signature"],
    }
    again = await put_device(site, alice, "alice-laptop-1", body)
    assert again.status_code == 200, again.text
    assert again.json()["devices"] == data["devices"]

    await publish(site, alice, ring, "alice-phone-2")
    listed = (await keys_of(site, alice, "alice")).json()
    assert [d["device_id"] for d in listed["devices"]] == ["alice-laptop-1", "alice-phone-2"]
    verified = e2ee.verify_directory("alice", listed["identity_key"], listed["devices"])
    assert len(verified.devices) == 2 and verified.rejected == ()


async def test_bad_signature_is_refused(site: Site, alice: User) -> None:
    ring, other = Keyring.generate(), Keyring.generate()
    body = device_body(ring, "alice", "alice-laptop-1")
    other.add(ring.device("alice-laptop-1"))
    # signed by another identity key than the one claimed
    forged = {**body, "signature": other.published_device("alice", "alice-laptop-1")["signature"]}
    expect_error(await put_device(site, alice, "alice-laptop-1", forged), 422, "bad_signature")
    # a valid certificate for another user's name
    for_bob = device_body(ring, "bob", "alice-laptop-1")
    expect_error(await put_device(site, alice, "alice-laptop-1", for_bob), 422, "bad_signature")
    # a valid certificate for another device id
    expect_error(await put_device(site, alice, "alice-laptop-9", body), 422, "bad_signature")
    # a certificate over other keys
    swapped = {**body, "x25519": b64e(ring.add_device("spare-device").x25519_public)}
    expect_error(await put_device(site, alice, "alice-laptop-1", swapped), 422, "bad_signature")
    assert (await keys_of(site, alice, "alice")).json() == {
        "username": "alice",
        "identity_key": None,
        "devices": [],
    }


@pytest.mark.parametrize(
    ("field_name", "value", "code"),
    [
        ("identity_key", "not*base64", "invalid_input"),
        ("identity_key", b64e(bytes(31)), "invalid_key"),
        ("x25519", b64e(bytes(33)), "invalid_key"),
        ("ed25519", "", "invalid_input"),
        ("signature", b64e(bytes(63)), "invalid_key"),
        ("signature", "A" * 129, "invalid_input"),
        ("x25519", "A", "invalid_key"),  # one symbol cannot be base64url
        ("x25519", None, "invalid_input"),
    ],
)
async def test_malformed_keys_are_refused(
    site: Site, alice: User, field_name: str, value: Any, code: str
) -> None:
    body = device_body(Keyring.generate(), "alice", "alice-laptop-1")
    body[field_name] = value
    expect_error(await put_device(site, alice, "alice-laptop-1", body), 422, code)


async def test_missing_and_unknown_fields_are_refused(site: Site, alice: User) -> None:
    body = device_body(Keyring.generate(), "alice", "alice-laptop-1")
    missing = {k: v for k, v in body.items() if k != "signature"}
    expect_error(await put_device(site, alice, "alice-laptop-1", missing), 422, "invalid_input")
    extra = {**body, "private_key": "oops"}
    expect_error(await put_device(site, alice, "alice-laptop-1", extra), 422, "invalid_input")


async def test_non_canonical_base64url_is_refused(site: Site, alice: User) -> None:
    body = device_body(Keyring.generate(), "alice", "alice-laptop-1")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(body["x25519"][-1])  # 32 bytes: the last symbol has 2 unused bits
    canonical = body["x25519"]
    body["x25519"] = canonical[:-1] + alphabet[last ^ 1]
    assert b64d(body["x25519"]) == b64d(canonical)  # the same key, spelt differently
    response = await put_device(site, alice, "alice-laptop-1", body)
    expect_error(response, 422, "invalid_key")


@pytest.mark.parametrize(
    ("device_id", "ok"),
    [
        ("a" * 7, False),
        ("a" * 8, True),
        ("Zz_-09az", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("bad.device", False),
        ("bad device", False),
        ("b%C3%A4d-device", False),  # "bäd-device"
        ("abcdefgh%0A", False),  # a trailing newline
    ],
)
async def test_device_id_rules(site: Site, alice: User, device_id: str, ok: bool) -> None:
    ring = Keyring.generate()
    name = device_id if ok else "placeholder-id"
    body = device_body(ring, "alice", name)
    response = await put_device(site, alice, device_id, body)
    if ok:
        assert response.status_code == 201, response.text
    else:
        error = expect_error(response, 422, "invalid_input")
        assert error["fields"][0]["field"] == "device_id"


async def test_same_device_id_with_other_keys_is_a_conflict(site: Site, alice: User) -> None:
    ring = Keyring.generate()
    await publish(site, alice, ring, "alice-laptop-1")
    other = Keyring.from_private_bytes(ring.identity_private_bytes())
    body = device_body(other, "alice", "alice-laptop-1")
    expect_error(await put_device(site, alice, "alice-laptop-1", body), 409, "device_exists")
    relabelled = device_body(ring, "alice", "alice-laptop-1", label="renamed")
    assert (await put_device(site, alice, "alice-laptop-1", relabelled)).status_code == 200


async def test_identity_mismatch_and_reset(site: Site, alice: User, bob: User) -> None:
    old = Keyring.generate()
    await publish(site, alice, old, "alice-laptop-1")
    await publish(site, alice, old, "alice-phone-2")
    new = Keyring.generate()
    body = device_body(new, "alice", "alice-tablet-3")
    expect_error(await put_device(site, alice, "alice-tablet-3", body), 409, "identity_mismatch")
    assert await site.audit("keys.identity_reset") == []

    reset = await put_device(site, alice, "alice-tablet-3", {**body, "reset_identity": True})
    assert reset.status_code == 201, reset.text
    data = (await keys_of(site, bob, "alice")).json()
    assert data["identity_key"] == b64e(new.identity_key)
    assert [d["device_id"] for d in data["devices"]] == ["alice-tablet-3"]
    (entry,) = await site.audit("keys.identity_reset")
    assert (entry["actor"], entry["target_type"], entry["target"]) == ("alice", "user", "alice")
    assert entry["actor_id"] == alice.id
    # the old identity's devices are gone for good: publishing one again is a mismatch
    again = device_body(old, "alice", "alice-laptop-1")
    expect_error(await put_device(site, alice, "alice-laptop-1", again), 409, "identity_mismatch")
    # resetting to the identity already in place is a no-op, not a second reset
    same = device_body(new, "alice", "alice-tablet-4", reset_identity=True)
    assert (await put_device(site, alice, "alice-tablet-4", same)).status_code == 201
    assert len(await site.audit("keys.identity_reset")) == 1


async def test_at_most_twenty_devices(site: Site, alice: User) -> None:
    ring = Keyring.generate()
    for i in range(20):
        await publish(site, alice, ring, f"device-{i:04d}")
    body = device_body(ring, "alice", "device-0020")
    expect_error(await put_device(site, alice, "device-0020", body), 409, "too_many_devices")
    # an existing one again is still fine
    again = device_body(ring, "alice", "device-0003")
    assert (await put_device(site, alice, "device-0003", again)).status_code == 200
    deleted = await site.http.delete(f"{API}/keys/devices/device-0000", headers=alice.headers)
    assert deleted.status_code == 204
    assert (await put_device(site, alice, "device-0020", body)).status_code == 201


async def test_delete_device(site: Site, alice: User, bob: User) -> None:
    ring = Keyring.generate()
    await publish(site, alice, ring, "alice-laptop-1")
    await publish(site, alice, ring, "alice-phone-2")
    await publish(site, bob, Keyring.generate(), "bob-phone-01")
    url = f"{API}/keys/devices/alice-laptop-1"
    # bob cannot delete alice's device (nor learn it exists)
    expect_error(await site.http.delete(url, headers=bob.headers), 404, "device_not_found")
    assert (await site.http.delete(url, headers=alice.headers)).status_code == 204
    expect_error(await site.http.delete(url, headers=alice.headers), 404, "device_not_found")
    data = (await keys_of(site, bob, "alice")).json()
    assert [d["device_id"] for d in data["devices"]] == ["alice-phone-2"]
    assert data["identity_key"] == b64e(ring.identity_key)  # the identity stays


async def test_keys_of_another_user_and_blocks(site: Site, alice: User, bob: User) -> None:
    ring = Keyring.generate()
    await publish(site, bob, ring, "bob-phone-01")
    response = await keys_of(site, alice, "bob")
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"username", "identity_key", "devices"}
    assert set(data["devices"][0]) == {
        "device_id",
        "x25519",
        "ed25519",
        "signature",
        "label",
        "created_at",
    }
    assert (await keys_of(site, alice, "BOB")).json()["username"] == "bob"
    expect_error(await keys_of(site, alice, "nobody"), 404, "user_not_found")
    no_keys = (await keys_of(site, bob, "alice")).json()
    assert no_keys == {"username": "alice", "identity_key": None, "devices": []}

    blocked = await site.http.post(f"{API}/blocks", json={"username": "alice"}, headers=bob.headers)
    assert blocked.status_code == 204, blocked.text
    expect_error(await keys_of(site, alice, "bob"), 404, "user_not_found")
    # the blocker can still see the blocked user's keys; unblocking restores the view
    assert (await keys_of(site, bob, "alice")).status_code == 200
    unblocked = await site.http.delete(f"{API}/blocks/alice", headers=bob.headers)
    assert unblocked.status_code == 204
    assert (await keys_of(site, alice, "bob")).status_code == 200


async def test_concurrent_first_devices_agree_on_one_identity(site: Site, alice: User) -> None:
    """Four browsers publish their first device at once, each with its own identity key:
    exactly one identity wins, the others are told identity_mismatch (no 500)."""
    rings = [Keyring.generate() for _ in range(4)]
    responses = await asyncio.gather(
        *(
            put_device(
                site, alice, f"device-{i:04d}", device_body(ring, "alice", f"device-{i:04d}")
            )
            for i, ring in enumerate(rings)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 409, 409, 409], [r.text for r in responses]
    winner = rings[[r.status_code for r in responses].index(201)]
    data = (await keys_of(site, alice, "alice")).json()
    assert data["identity_key"] == b64e(winner.identity_key) and len(data["devices"]) == 1


async def test_sdk_remove_device_keeps_history_readable(site: Site) -> None:
    alice = await person(site, "alice", "alice-laptop-1", "alice-old-phone")
    bob = await person(site, "bob", "bob-phone-01")
    envelope = seal_dm(
        "old news",
        sender="bob",
        sender_device_keys=bob.device("bob-phone-01"),
        peer=await e2ee.fetch_keys(bob.sdk, "alice"),
        own=await e2ee.fetch_keys(bob.sdk, "bob"),
        client_id="m-1",
    )
    await e2ee.remove_device(alice.sdk, "alice-old-phone")
    peer = await e2ee.fetch_keys(bob.sdk, "alice")
    assert [d.device_id for d in peer.devices] == ["alice-laptop-1"]
    later = seal_dm(
        "new news",
        sender="bob",
        sender_device_keys=bob.device("bob-phone-01"),
        peer=peer,
        own=await e2ee.fetch_keys(bob.sdk, "bob"),
        client_id="m-2",
    )
    assert [k["device"] for k in later["keys"]] == ["alice-laptop-1", "bob-phone-01"]
    with pytest.raises(NotFoundError):
        await e2ee.remove_device(alice.sdk, "alice-old-phone")
    # the removed device's keys stay in the keyring: what it received stays readable
    opened = open_envelope(
        envelope,
        expected_conv="dm:alice:bob",
        me_user="alice",
        my_device_keys=alice.device("alice-old-phone"),
        sender_keys=await e2ee.fetch_keys(alice.sdk, "bob"),
    )
    assert opened.payload["text"] == "old news"


# --- the backup --------------------------------------------------------------------------------


async def test_backup_compare_and_set(site: Site, alice: User, bob: User) -> None:
    expect_error(await site.http.get(f"{API}/keys/backup", headers=alice.headers), 404, "no_backup")
    first = await put_backup(site, alice, "blob-1")
    assert first.status_code == 200 and first.json() == {"version": 1}
    conflict = expect_error(await put_backup(site, alice, "blob-x"), 409, "backup_conflict")
    assert conflict["details"] == {"version": 1}
    assert (await put_backup(site, alice, "blob-2", 1)).json() == {"version": 2}
    stale = expect_error(await put_backup(site, alice, "blob-x", 1), 409, "backup_conflict")
    assert stale["details"] == {"version": 2}
    got = await site.http.get(f"{API}/keys/backup", headers=alice.headers)
    assert got.status_code == 200
    assert got.json()["blob"] == "blob-2" and got.json()["version"] == 2
    assert "updated_at" in got.json()
    # bob has his own (none), and never alice's
    expect_error(await site.http.get(f"{API}/keys/backup", headers=bob.headers), 404, "no_backup")
    expect_error(await put_backup(site, bob, "b", 1), 409, "backup_conflict")
    expect_error(await put_backup(site, bob, ""), 422, "invalid_input")
    expect_error(await put_backup(site, bob, "x" * (256 * 1024 + 1)), 422, "invalid_input")
    expect_error(await put_backup(site, bob, "b", 0), 422, "invalid_input")


async def test_concurrent_first_backups_one_wins(site: Site, alice: User) -> None:
    responses = await asyncio.gather(*(put_backup(site, alice, f"blob-{i}") for i in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409]
    for response in responses:
        if response.status_code == 409:
            expect_error(response, 409, "backup_conflict")


async def test_backup_downloads_are_rate_limited(start: Start) -> None:
    async with start(rate_limit_backup_account="3/hour") as site:
        alice = await register(site.http, "alice")
        bob = await register(site.http, "bob")
        assert (await put_backup(site, alice, "blob-1")).status_code == 200
        for _ in range(3):
            got = await site.http.get(f"{API}/keys/backup", headers=alice.headers)
            assert got.status_code == 200, got.text
        limited = await site.http.get(f"{API}/keys/backup", headers=alice.headers)
        expect_error(limited, 429, "rate_limited")
        assert int(limited.headers["Retry-After"]) > 0
        # per account: bob is not affected; writing is not limited
        expect_error(
            await site.http.get(f"{API}/keys/backup", headers=bob.headers), 404, "no_backup"
        )
        assert (await put_backup(site, alice, "blob-2", 1)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/keys/devices/alice-laptop-1", {}),
        ("DELETE", "/keys/devices/alice-laptop-1", None),
        ("GET", "/keys/users/alice", None),
        ("PUT", "/keys/backup", {"blob": "x"}),
        ("GET", "/keys/backup", None),
    ],
)
async def test_every_endpoint_needs_authentication(
    site: Site, alice: User, method: str, path: str, body: Any
) -> None:
    response = await site.http.request(method, API + path, json=body)
    expect_error(response, 401, "not_authenticated")
    bad = {"Authorization": "Bearer not-a-token"}
    response = await site.http.request(method, API + path, json=body, headers=bad)
    assert response.status_code == 401, response.text


# --- end to end through the SDK ----------------------------------------------------------------


@dataclass
class Person:
    name: str
    sdk: EchoChatClient
    ring: Keyring

    def device(self, device_id: str) -> e2ee.DeviceKeys:
        return self.ring.device(device_id)


async def person(site: Site, name: str, *device_ids: str) -> Person:
    sdk = site.sdk()
    await sdk.register(name, PASSWORD)
    ring = Keyring.generate()
    for device_id in device_ids:
        ring.add_device(device_id)
        directory = await e2ee.publish_device(sdk, ring, device_id, label=device_id)
        assert device_id in [d.device_id for d in directory.devices]
    return Person(name, sdk, ring)


def tampered(envelope: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**envelope, **changes}


def flip_b64(value: str, index: int) -> str:
    raw = bytearray(b64d(value))
    raw[index] ^= 1
    return b64e(bytes(raw))


async def test_two_users_exchange_encrypted_payloads(site: Site) -> None:
    alice = await person(site, "alice", "alice-laptop-1", "alice-phone-2")
    bob = await person(site, "bob", "bob-phone-01", "bob-laptop-02")
    carol = await person(site, "carol", "carol-phone-1")

    peer = await e2ee.fetch_keys(alice.sdk, "bob")
    own = await e2ee.fetch_keys(alice.sdk, "alice", trusted_identity=alice.ring.identity_key)
    assert sorted(d.device_id for d in peer.devices) == ["bob-laptop-02", "bob-phone-01"]
    text = "Meet at 6 \U0001f319 \u2014 \u0645\u0631\u062d\u0628\u0627"
    envelope = seal_dm(
        text,
        sender="alice",
        sender_device_keys=alice.device("alice-laptop-1"),
        peer=peer,
        own=own,
        client_id="msg-0001",
    )
    assert envelope["conv"] == "dm:alice:bob"
    assert [(k["user"], k["device"]) for k in envelope["keys"]] == [
        ("alice", "alice-laptop-1"),  # the sending device keeps a wrap of its own message
        ("alice", "alice-phone-2"),
        ("bob", "bob-laptop-02"),
        ("bob", "bob-phone-01"),
    ]
    stored = str(envelope)
    assert text not in stored and "Meet" not in stored  # the server only ever sees this

    # bob, on both devices, with alice's keys as fetched (and pinned on first use)
    alice_keys = await e2ee.fetch_keys(bob.sdk, envelope["sender"])
    pinned = alice_keys.identity_key
    for device_id in ("bob-phone-01", "bob-laptop-02"):
        opened = open_envelope(
            envelope,
            expected_conv=e2ee.dm_conversation("bob", "alice"),
            me_user="bob",
            my_device_keys=bob.device(device_id),
            sender_keys=alice_keys,
            trusted_identity=pinned,
        )
        assert opened.payload == {"type": "text", "text": text}
        assert (opened.sender, opened.sender_device) == ("alice", "alice-laptop-1")
    # alice's devices, the sending one included, read her own sent message
    for device_id in ("alice-laptop-1", "alice-phone-2"):
        mine = open_envelope(
            envelope,
            expected_conv="dm:alice:bob",
            me_user="alice",
            my_device_keys=alice.device(device_id),
            sender_keys=own,
        )
        assert mine.payload["text"] == text

    # carol got hold of the ciphertext: she cannot read it
    carols_view = await e2ee.fetch_keys(carol.sdk, "alice")
    with pytest.raises(E2EEError) as caught:
        open_envelope(
            envelope,
            expected_conv="dm:alice:bob",
            me_user="carol",
            my_device_keys=carol.device("carol-phone-1"),
            sender_keys=carols_view,
        )
    assert caught.value.code == "not_a_recipient"

    # the server tampers with what it stores: every change is caught, with a clear code
    keys = envelope["keys"]
    swapped = [  # bob's two wraps exchanged
        keys[0],
        keys[1],
        {**keys[2], "wrap": keys[3]["wrap"]},
        {**keys[3], "wrap": keys[2]["wrap"]},
    ]
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("flip ct", tampered(envelope, ct=flip_b64(envelope["ct"], 3)), "bad_signature"),
        ("flip nonce", tampered(envelope, nonce=flip_b64(envelope["nonce"], 0)), "bad_signature"),
        ("flip sig", tampered(envelope, sig=flip_b64(envelope["sig"], 0)), "bad_signature"),
        ("swap wraps", tampered(envelope, keys=swapped), "bad_signature"),
        ("drop a wrap", tampered(envelope, keys=keys[:3]), "bad_signature"),
        ("change client_id", tampered(envelope, client_id="msg-0002"), "bad_signature"),
        (
            "change sender device",
            tampered(envelope, sender_device="alice-phone-2"),
            "bad_signature",
        ),
        ("change sender", tampered(envelope, sender="carol"), "wrong_sender"),
        ("change conv", tampered(envelope, conv="dm:alice:carol"), "wrong_conversation"),
        ("change version", tampered(envelope, v=2), "unsupported_version"),
        ("add a field", tampered(envelope, note="hi"), "malformed"),
        ("drop sig", {k: v for k, v in envelope.items() if k != "sig"}, "malformed"),
    ]
    for label, changed, code in cases:
        sender_keys = await e2ee.fetch_keys(bob.sdk, changed.get("sender", "alice"))
        with pytest.raises(E2EEError) as caught:
            open_envelope(
                changed,
                expected_conv="dm:alice:bob",
                me_user="bob",
                my_device_keys=bob.device("bob-phone-01"),
                sender_keys=sender_keys,
            )
        assert caught.value.code == code, (label, caught.value)
    # and a conversation swap by the server: the envelope shown in another conversation
    with pytest.raises(E2EEError) as caught:
        open_envelope(
            envelope,
            expected_conv="group:family",
            me_user="bob",
            my_device_keys=bob.device("bob-phone-01"),
            sender_keys=alice_keys,
        )
    assert caught.value.code == "wrong_conversation"


async def test_server_cannot_add_a_device_silently(site: Site) -> None:
    """The server (or a stolen database) inserts its own device into bob's directory: it
    cannot sign it with bob's identity key, so clients leave it out and can warn."""
    alice = await person(site, "alice", "alice-laptop-1")
    await person(site, "bob", "bob-phone-01")
    mallory = Keyring.generate()
    rogue = mallory.add_device("bob-rogue-99")
    cert = mallory.certify("bob", rogue.device_id)
    async with site.ctx.db.transaction() as conn:
        user = await user_store.by_username(conn, "bob")
        assert user is not None
        await key_store.put_device_txn(
            conn,
            user.id,
            device_id=cert.device_id,
            x25519=b64e(cert.x25519),
            ed25519=b64e(cert.ed25519),
            signature=b64e(cert.signature),
            label="totally bob",
        )
    raw = (await alice.sdk._request("GET", "/keys/users/bob")).json()
    assert len(raw["devices"]) == 2
    peer = await e2ee.fetch_keys(alice.sdk, "bob")
    assert [d.device_id for d in peer.devices] == ["bob-phone-01"]
    assert peer.rejected == (e2ee.RejectedDevice("bob-rogue-99", "bad_device_signature"),)
    recipients = e2ee.recipients_for("alice", "alice-laptop-1", peer)
    assert [r.device for r in recipients] == ["bob-phone-01"]


async def test_identity_reset_is_never_silent(site: Site) -> None:
    alice = await person(site, "alice", "alice-laptop-1")
    bob = await person(site, "bob", "bob-phone-01")
    pinned = (await e2ee.fetch_keys(alice.sdk, "bob")).identity_key
    before = e2ee.safety_number("alice", alice.ring.identity_key, "bob", pinned)

    fresh = Keyring.generate()
    fresh.add_device("bob-phone-02")
    with pytest.raises(ConflictError) as conflict:
        await e2ee.publish_device(bob.sdk, fresh, "bob-phone-02")
    assert conflict.value.code == "identity_mismatch"
    await e2ee.publish_device(bob.sdk, fresh, "bob-phone-02", reset_identity=True)

    with pytest.raises(E2EEError) as caught:
        await e2ee.fetch_keys(alice.sdk, "bob", trusted_identity=pinned)
    assert caught.value.code == "identity_changed"
    now = await e2ee.fetch_keys(alice.sdk, "bob")
    after = e2ee.safety_number("bob", now.identity_key, "alice", alice.ring.identity_key)
    assert after != before and str(after) != str(before)
    assert after == e2ee.safety_number("alice", alice.ring.identity_key, "bob", now.identity_key)


async def test_fetch_keys_of_users_without_keys_or_accounts(site: Site) -> None:
    alice = await person(site, "alice", "alice-laptop-1")
    await person(site, "carol")
    with pytest.raises(E2EEError) as no_keys:
        await e2ee.fetch_keys(alice.sdk, "Carol")
    assert no_keys.value.code == "no_keys"
    with pytest.raises(NotFoundError) as missing:
        await e2ee.fetch_keys(alice.sdk, "nobody")
    assert missing.value.code == "user_not_found"
    with pytest.raises(E2EEError) as bad:
        await e2ee.fetch_keys(alice.sdk, "no/such")
    assert bad.value.code == "malformed"


async def test_backup_and_restore_on_a_second_browser(site: Site) -> None:
    """The real thing (600,000 PBKDF2 iterations): a new browser restores every key from
    the backup, reads the history, adds its own device and writes the backup back; a stale
    writer must merge; a wrong passphrase is refused with decrypt_failed."""
    alice = await person(site, "alice", "alice-laptop-1")
    bob = await person(site, "bob", "bob-phone-01")
    assert await e2ee.save_backup(alice.sdk, alice.ring, PASSPHRASE) == 1

    # bob writes to alice while she has a single device
    envelope = seal_dm(
        "before the new browser",
        sender="bob",
        sender_device_keys=bob.device("bob-phone-01"),
        peer=await e2ee.fetch_keys(bob.sdk, "alice"),
        own=await e2ee.fetch_keys(bob.sdk, "bob"),
        client_id="m-1",
    )
    # and alice replies from her only device, whose local copy will be lost
    reply = seal_dm(
        "my reply",
        sender="alice",
        sender_device_keys=alice.device("alice-laptop-1"),
        peer=await e2ee.fetch_keys(alice.sdk, "bob"),
        own=await e2ee.fetch_keys(alice.sdk, "alice"),
        client_id="m-2",
    )

    browser = site.sdk()
    await browser.login("alice", PASSWORD)
    with pytest.raises(E2EEError) as wrong:
        await e2ee.load_backup(browser, "not the passphrase")
    assert wrong.value.code == "decrypt_failed"
    restored = await e2ee.load_backup(browser, PASSPHRASE)
    assert restored.version == 1
    assert restored.keyring.to_json() == alice.ring.to_json()
    history = open_envelope(
        envelope,
        expected_conv="dm:alice:bob",
        me_user="alice",
        my_device_keys=restored.keyring.device("alice-laptop-1"),
        sender_keys=await e2ee.fetch_keys(browser, "bob"),
    )
    assert history.payload["text"] == "before the new browser"
    # her own sent message too, through the sending device's self-wrap
    sent = open_envelope(
        reply,
        expected_conv="dm:alice:bob",
        me_user="alice",
        my_device_keys=restored.keyring.device("alice-laptop-1"),
        sender_keys=await e2ee.fetch_keys(browser, "alice"),
    )
    assert sent.payload["text"] == "my reply"

    restored.keyring.add_device("alice-browser-2")
    directory = await e2ee.publish_device(browser, restored.keyring, "alice-browser-2")
    assert sorted(d.device_id for d in directory.devices) == ["alice-browser-2", "alice-laptop-1"]
    version = await e2ee.save_backup(
        browser, restored.keyring, PASSPHRASE, expected_version=restored.version
    )
    assert version == 2

    # the first browser, unaware, adds a device too: its write conflicts; it merges
    alice.ring.add_device("alice-phone-3")
    with pytest.raises(ConflictError) as stale:
        await e2ee.save_backup(alice.sdk, alice.ring, PASSPHRASE, expected_version=1)
    assert stale.value.code == "backup_conflict"
    current = await e2ee.load_backup(alice.sdk, PASSPHRASE)
    assert alice.ring.merge(current.keyring) == ["alice-browser-2"]
    assert (
        await e2ee.save_backup(alice.sdk, alice.ring, PASSPHRASE, expected_version=current.version)
        == 3
    )
    final = await e2ee.load_backup(browser, PASSPHRASE)
    assert sorted(final.keyring.devices) == ["alice-browser-2", "alice-laptop-1", "alice-phone-3"]

    # the blob the server holds reveals no key
    async with site.ctx.db.read() as conn:
        user = await user_store.by_username(conn, "alice")
        assert user is not None
        row = await key_store.backup(conn, user.id)
    assert row is not None and row.version == 3
    assert b64e(alice.ring.identity_private_bytes()) not in row.blob
    assert b64e(alice.device("alice-laptop-1").x25519_private_bytes()) not in row.blob


def test_public_device_json_round_trip() -> None:
    ring = Keyring.generate()
    ring.add_device("some-device")
    public = ring.certify("alice", "some-device")
    assert PublicDevice.from_json(public.to_json()) == public
    assert public.certified_by("alice", ring.identity_key)
    assert not public.certified_by("bob", ring.identity_key)
