"""The E2EE key flows of the /chat page in Chromium (state/keysession.js, ui/keysetup.js,
ui/safety.js, ui/qr.js; docs/e2ee.md section 12), against a live server and the Python SDK:

- first sign-in: the recovery key is shown once, the backup it locks opens in Python;
- a second browser of the same user restores (recovery key, passphrase), refuses a wrong
  secret with a clear message, and opens a message sealed earlier by the SDK for the first
  browser's device; a backup written meanwhile by another browser is merged, not lost;
- start fresh: explained, then new keys; the other browser locks, a buddy is warned;
- safety numbers: the same digits on both sides, the QR code module for module as segno
  makes it, "verified" kept across a reload; a buddy's new device shows up as a trust event;
- no secure context: said so; too many backup downloads: said so.

Screenshots of every dialog go to test-output/<test id>/.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import segno
import segno.encoder
from playwright.async_api import Locator, Page, Route, expect

from echochat.client import EchoChatClient, e2ee
from echochat.client.e2ee import Keyring
from echochat.domain.e2ee import b64e
from tests.conftest import LiveServer
from tests.e2e.accounts import ALICE, Account, Cast, sign_in
from tests.e2e.buddylist import Chat, befriend, open_chat, register
from tests.e2e.conftest import SHARED_LIMITS, NewContext, Watch

pytestmark = pytest.mark.asyncio(loop_scope="session")

RECOVERY_KEY = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){12}$")
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def shared_server_env() -> dict[str, str]:
    return SHARED_LIMITS


# Every evaluation gets the page's KeySession (the one pages/chat.js made) as `s`.
SESSION = """
const ks = await import("/static/js/state/keysession.js");
const s = ks.currentSession();
"""


async def in_session(page: Page, body: str, arg: Any = None) -> Any:
    return await page.evaluate(f"async (arg) => {{\n{SESSION}\n{body}\n}}", arg)


@pytest_asyncio.fixture(loop_scope="session")
async def sdk_clients() -> AsyncIterator[list[EchoChatClient]]:
    """SDK clients made by :func:`sdk` during a test, closed after it."""
    clients: list[EchoChatClient] = []
    yield clients
    for client in clients:
        await client.aclose()


async def sdk(server: LiveServer, clients: list[EchoChatClient], who: Account) -> EchoChatClient:
    client = EchoChatClient(server.url)
    clients.append(client)
    await client.login(who.username, who.password)
    return client


def lock(chat: Chat) -> Locator:
    return chat.window.locator("#keys-lock")


async def expect_unlocked(chat: Chat) -> None:
    await expect(lock(chat)).to_have_attribute("data-state", "unlocked")
    await expect(chat.page.locator("#keys-alert")).to_be_hidden()


async def first_chat(
    new_context: NewContext, watch: Watch, server: LiveServer, who: Account, **options: Any
) -> Chat:
    """``who`` signs in on a browser that has no keys, to an account without a backup yet."""
    chat = await open_chat(new_context, watch, server, who, dismiss_keys=False, **options)
    chat.problems.expect_refusal("/api/v1/keys/backup", 404)  # "no backup yet": first run
    return chat


async def set_up_recovery_key(chat: Chat, shots: Path | None = None) -> str:
    """Accept the recovery key offered at the first sign-in; returns it."""
    dialog = chat.page.get_by_role("dialog", name="Protect your messages")
    await expect(dialog).to_be_visible()
    key = (await dialog.locator("#keys-recovery-key").text_content() or "").strip()
    assert RECOVERY_KEY.match(key), key
    if shots:
        await chat.page.screenshot(path=shots / "setup-recovery-key.png")
    await dialog.get_by_label("I have saved my recovery key").check()
    await dialog.get_by_role("button", name="Continue").click()
    await expect(dialog).to_be_hidden(timeout=20_000)
    await expect_unlocked(chat)
    return key


async def restore(chat: Chat, secret: str) -> None:
    dialog = chat.page.get_by_role("dialog", name="Unlock your messages")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Recovery key or passphrase").fill(secret)
    await dialog.get_by_role("button", name="Unlock").click()
    await expect(dialog).to_be_hidden(timeout=20_000)
    await expect_unlocked(chat)


async def trust_events(page: Page, count: int) -> None:
    """Wait until the page's "trust" listener (window.__trust) has seen ``count`` events."""
    await page.wait_for_function("(n) => window.__trust.length >= n", arg=count)


async def sdk_user(client: EchoChatClient, device_id: str) -> tuple[Keyring, e2ee.DeviceKeys]:
    """An SDK user with keys (a bot, say): identity, one device, published."""
    ring = Keyring.generate()
    device = ring.add_device(device_id)
    await e2ee.publish_device(client, ring, device_id, label="bot")
    return ring, device


# --- first sign-in and restore --------------------------------------------------------------


async def test_first_sign_in_shows_the_recovery_key_once_and_backs_up(
    shared_server: LiveServer,
    people: Cast,
    new_context: NewContext,
    watch: Watch,
    sdk_clients: list[EchoChatClient],
    output_dir: Path,
) -> None:
    await register(shared_server, people.alice)
    chat = await first_chat(
        new_context,
        watch,
        shared_server,
        people.alice,
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = chat.page
    await expect(lock(chat)).to_have_attribute("data-state", "locked")
    dialog = page.get_by_role("dialog", name="Protect your messages")
    await expect(dialog).to_be_visible()
    # Copy puts the key on the clipboard
    shown = (await dialog.locator("#keys-recovery-key").text_content() or "").strip()
    await dialog.get_by_role("button", name="Copy").click()
    await expect(dialog.get_by_text("Copied.")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == shown
    # "I have saved it" is required
    await dialog.get_by_role("button", name="Continue").click()
    await expect(dialog.get_by_text("Tick the box once you have saved the key")).to_be_visible()
    await page.screenshot(path=output_dir / "setup-not-confirmed.png")
    key = await set_up_recovery_key(chat, output_dir)
    await expect(page.get_by_role("status").filter(has_text="Encryption is set up")).to_be_visible()
    await page.screenshot(path=output_dir / "unlocked.png")

    device_id = await in_session(page, "return s.deviceId;")
    identity = await in_session(page, "return s.identityKey;")
    # The server holds a backup that this recovery key opens (and only it), with this device.
    client = await sdk(shared_server, sdk_clients, people.alice)
    with pytest.raises(e2ee.E2EEError) as wrong:
        await e2ee.load_backup(client, e2ee.new_recovery_key())
    assert wrong.value.code == "decrypt_failed"
    restored = await e2ee.load_backup(client, key)
    assert restored.version == 1
    assert list(restored.keyring.devices) == [device_id]
    directory = await e2ee.fetch_keys(client, people.alice.username)
    assert b64e(directory.identity_key) == identity
    assert restored.keyring.identity_key == directory.identity_key
    assert [d.device_id for d in directory.devices] == [device_id]
    assert directory.devices[0].label == "Chrome on Linux"

    # Shown once: after a reload the keys come from IndexedDB and the key is nowhere.
    await page.reload()
    await chat.connected()
    await expect_unlocked(chat)
    assert await in_session(page, "return s.deviceId;") == device_id
    assert key not in await page.content()
    await expect(page.get_by_role("dialog")).to_have_count(0)
    # the padlock, when unlocked, says so
    await lock(chat).click()
    notice = page.get_by_role("dialog", name="Encryption is on")
    await expect(notice).to_be_visible()
    await page.screenshot(path=output_dir / "encryption-is-on.png")
    await notice.get_by_role("button", name="OK").click()
    await chat.assert_clean()


async def test_second_browser_restores_with_the_recovery_key_and_reads_old_messages(
    shared_server: LiveServer,
    people: Cast,
    new_context: NewContext,
    watch: Watch,
    sdk_clients: list[EchoChatClient],
    output_dir: Path,
) -> None:
    await register(shared_server, people.alice, people.bob)
    await befriend(shared_server, people.alice, people.bob)
    first = await first_chat(new_context, watch, shared_server, people.alice)
    key = await set_up_recovery_key(first)
    first_device = await in_session(first.page, "return s.deviceId;")

    # bob (an SDK program) writes to alice while she has one device: one wrap is hers
    bob = await sdk(shared_server, sdk_clients, people.bob)
    _, bob_device = await sdk_user(bob, "bob-bot-0001")
    envelope = e2ee.seal_dm(
        "sealed before the second browser existed",
        sender=people.bob.username,
        sender_device_keys=bob_device,
        peer=await e2ee.fetch_keys(bob, people.alice.username),
        own=await e2ee.fetch_keys(bob, people.bob.username),
        client_id="m-1",
    )
    assert [k["device"] for k in envelope["keys"] if k["user"] == people.alice.username] == [
        first_device
    ]

    second = await open_chat(new_context, watch, shared_server, people.alice, dismiss_keys=False)
    page = second.page
    dialog = page.get_by_role("dialog", name="Unlock your messages")
    await expect(dialog).to_be_visible()
    await expect(second.page.locator("#keys-alert")).to_contain_text("locked in this browser")
    # locked: nothing can be opened yet, and it says why
    locked = await in_session(
        page,
        "try { await s.openDm(arg); return 'opened'; } catch (e) { return [e.code, e.message]; }",
        {"sender": people.bob.username, "recipient": people.alice.username, "envelope": envelope},
    )
    assert locked[0] == "locked" and "unlock" in locked[1]
    await page.screenshot(path=output_dir / "restore.png")

    # a wrong secret is refused, clearly
    await dialog.get_by_label("Recovery key or passphrase").fill(e2ee.new_recovery_key())
    await dialog.get_by_role("button", name="Unlock").click()
    await expect(
        dialog.get_by_text("That is not the recovery key or passphrase of your key backup")
    ).to_be_visible(timeout=20_000)
    await expect(dialog.get_by_text("Wrong recovery key or passphrase.")).to_be_visible()
    await page.screenshot(path=output_dir / "restore-wrong-secret.png")
    # typed sloppily (lower case, spaces for dashes) the right key still works
    await restore(second, key.lower().replace("-", " "))
    second_device = await in_session(page, "return s.deviceId;")
    assert second_device != first_device

    opened = await in_session(
        page,
        "return (await s.openDm(arg)).payload;",
        {"sender": people.bob.username, "recipient": people.alice.username, "envelope": envelope},
    )
    assert opened == {"type": "text", "text": "sealed before the second browser existed"}

    # the backup now holds both devices, and the directory lists both
    alice = await sdk(shared_server, sdk_clients, people.alice)
    restored = await e2ee.load_backup(alice, key)
    assert restored.version == 2
    assert sorted(restored.keyring.devices) == sorted([first_device, second_device])
    listed = await e2ee.fetch_keys(alice, people.alice.username)
    assert sorted(d.device_id for d in listed.devices) == sorted([first_device, second_device])

    # what the second browser seals, bob (and alice's first browser) can open
    sealed = await in_session(
        page, "return s.sealDm(arg, {type: 'text', text: 'hi bob'}, 'c-1');", people.bob.username
    )
    got = e2ee.open_envelope(
        sealed,
        expected_conv=f"dm:{people.alice.username}:{people.bob.username}",
        me_user=people.bob.username,
        my_device_keys=bob_device,
        sender_keys=await e2ee.fetch_keys(bob, people.alice.username),
    )
    assert got.payload == {"type": "text", "text": "hi bob"}
    mine = await in_session(
        first.page,
        "return (await s.openDm(arg)).payload;",
        {"sender": people.alice.username, "recipient": people.bob.username, "envelope": sealed},
    )
    assert mine == {"type": "text", "text": "hi bob"}
    await first.assert_clean()
    await second.assert_clean()


async def test_passphrase_instead_of_a_recovery_key(
    shared_server: LiveServer,
    people: Cast,
    new_context: NewContext,
    watch: Watch,
    sdk_clients: list[EchoChatClient],
    output_dir: Path,
) -> None:
    await register(shared_server, people.alice)
    first = await first_chat(new_context, watch, shared_server, people.alice)
    page = first.page
    dialog = page.get_by_role("dialog", name="Protect your messages")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Passphrase", exact=False).first.check()
    form = dialog.locator("#keys-passphrase-form")
    await expect(form).to_be_visible()
    await form.get_by_label("Passphrase", exact=True).fill("short")
    await form.get_by_label("Type it again").fill("short")
    await form.get_by_role("button", name="Continue").click()
    await expect(form.get_by_text("Use at least 8 characters")).to_be_visible()
    await form.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    await form.get_by_label("Type it again").fill(PASSPHRASE + "!")
    await form.get_by_role("button", name="Continue").click()
    await expect(form.get_by_text("The two passphrases do not match")).to_be_visible()
    await page.screenshot(path=output_dir / "setup-passphrase-mismatch.png")
    await form.get_by_label("Type it again").fill(PASSPHRASE)
    await form.get_by_role("button", name="Continue").click()
    await expect(dialog).to_be_hidden(timeout=20_000)
    await expect_unlocked(first)

    client = await sdk(shared_server, sdk_clients, people.alice)
    assert (await e2ee.load_backup(client, PASSPHRASE)).version == 1

    second = await open_chat(new_context, watch, shared_server, people.alice, dismiss_keys=False)
    restore_dialog = second.page.get_by_role("dialog", name="Unlock your messages")
    await restore_dialog.get_by_label("Recovery key or passphrase").fill("correct horse battery")
    await restore_dialog.get_by_role("button", name="Unlock").click()
    await expect(restore_dialog.get_by_text("Wrong recovery key or passphrase.")).to_be_visible(
        timeout=20_000
    )
    await restore(second, PASSPHRASE)
    restored = await e2ee.load_backup(client, PASSPHRASE)
    assert len(restored.keyring.devices) == 2
    await first.assert_clean()
    await second.assert_clean()


async def test_a_failed_publish_is_retried_without_a_second_identity(
    shared_server: LiveServer,
    people: Cast,
    new_context: NewContext,
    watch: Watch,
    sdk_clients: list[EchoChatClient],
) -> None:
    """The backup is written, then publishing the device fails (the server is briefly
    unavailable): Continue again finishes the same keys, under the passphrase now typed."""
    await register(shared_server, people.alice)
    chat = await first_chat(new_context, watch, shared_server, people.alice)
    page = chat.page
    failed: list[str] = []

    async def unavailable_once(route: Route) -> None:
        if failed:
            await route.continue_()
            return
        failed.append(route.request.url)
        await route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": {"code": "unavailable", "message": "the server is busy"}}',
        )

    await page.route("**/api/v1/keys/devices/*", unavailable_once)
    dialog = page.get_by_role("dialog", name="Protect your messages")
    await dialog.get_by_label("Passphrase", exact=False).first.check()
    form = dialog.locator("#keys-passphrase-form")
    await form.get_by_label("Passphrase", exact=True).fill("first passphrase")
    await form.get_by_label("Type it again").fill("first passphrase")
    await form.get_by_role("button", name="Continue").click()
    await expect(form.get_by_text("The server is busy.")).to_be_visible(timeout=20_000)
    await expect(lock(chat)).to_have_attribute("data-state", "locked")
    await form.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    await form.get_by_label("Type it again").fill(PASSPHRASE)
    await form.get_by_role("button", name="Continue").click()
    await expect(dialog).to_be_hidden(timeout=20_000)
    await expect_unlocked(chat)

    client = await sdk(shared_server, sdk_clients, people.alice)
    device_id = await in_session(page, "return s.deviceId;")
    restored = await e2ee.load_backup(client, PASSPHRASE)
    assert (restored.version, list(restored.keyring.devices)) == (2, [device_id])
    with pytest.raises(e2ee.E2EEError):
        await e2ee.load_backup(client, "first passphrase")
    directory = await e2ee.fetch_keys(client, people.alice.username)
    assert directory.identity_key == restored.keyring.identity_key
    assert [d.device_id for d in directory.devices] == [device_id]
    # the one refusal was ours
    assert failed and failed[0].endswith(f"/keys/devices/{device_id}")
    chat.problems.bad_responses = [r for r in chat.problems.bad_responses if r[1] != 503]
    chat.problems.console_errors = [
        e for e in chat.problems.console_errors if "status of 503" not in e[0]
    ]
    await chat.assert_clean()


async def test_a_backup_written_meanwhile_is_merged_not_lost(
    shared_server: LiveServer,
    people: Cast,
    new_context: NewContext,
    watch: Watch,
    sdk_clients: list[EchoChatClient],
) -> None:
    await register(shared_server, people.alice)
    alice = await sdk(shared_server, sdk_clients, people.alice)
    ring, _ = await sdk_user(alice, "alice-laptop-1")
    assert await e2ee.save_backup(alice, ring, PASSPHRASE) == 1

    chat = await open_chat(new_context, watch, shared_server, people.alice, dismiss_keys=False)
    await expect(chat.page.get_by_role("dialog", name="Unlock your messages")).to_be_visible()
    # The page holds backup version 1. Another program adds a device and writes version 2.
    ring.add_device("alice-phone-02")
    await e2ee.publish_device(alice, ring, "alice-phone-02")
    assert await e2ee.save_backup(alice, ring, PASSPHRASE, expected_version=1) == 2
    chat.problems.expect_refusal("/api/v1/keys/backup", 409)  # the compare-and-set loses once
    await restore(chat, PASSPHRASE)
    browser_device = await in_session(chat.page, "return s.deviceId;")

    final = await e2ee.load_backup(alice, PASSPHRASE)
    assert final.version == 3
    assert sorted(final.keyring.devices) == sorted(
        ["alice-laptop-1", "alice-phone-02", browser_device]
    )
    await chat.assert_clean()


# --- start fresh -------------------------------------------------------------------------------


async def test_start_fresh_explains_resets_and_warns(
    shared_server: LiveServer,
    people: Cast,
    new_context: NewContext,
    watch: Watch,
    sdk_clients: list[EchoChatClient],
    output_dir: Path,
) -> None:
    await register(shared_server, people.alice, people.bob)
    await befriend(shared_server, people.alice, people.bob)
    first = await first_chat(new_context, watch, shared_server, people.alice)
    old_key = await set_up_recovery_key(first)
    old_identity = await in_session(first.page, "return s.identityKey;")
    bob = await first_chat(new_context, watch, shared_server, people.bob)
    await set_up_recovery_key(bob)
    # bob has talked with alice: her identity key is pinned in his browser
    await in_session(
        bob.page,
        "window.__trust = []; s.on('trust', (e) => window.__trust.push(e)); await s.trust(arg);",
        people.alice.username,
    )

    second = await open_chat(new_context, watch, shared_server, people.alice, dismiss_keys=False)
    page = second.page
    dialog = page.get_by_role("dialog", name="Unlock your messages")
    await dialog.get_by_role("button", name="I lost it — start fresh…").click()
    fresh = page.get_by_role("dialog", name="Start fresh?")
    await expect(fresh).to_be_visible()
    await expect(fresh).to_contain_text("cannot be opened")
    await expect(fresh).to_contain_text("Messages sent before now can no longer be read")
    await expect(fresh).to_contain_text("Your buddies see a warning")
    await page.screenshot(path=output_dir / "start-fresh-explained.png")
    # "Back" goes back to unlocking
    await fresh.get_by_role("button", name="Back").click()
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="I lost it — start fresh…").click()
    await fresh.get_by_role("button", name="Start fresh").click()
    setup = page.get_by_role("dialog", name="Start fresh: new keys")
    await expect(setup).to_be_visible()
    await expect(setup).to_contain_text("You are starting fresh.")
    new_key = (await setup.locator("#keys-recovery-key").text_content() or "").strip()
    assert RECOVERY_KEY.match(new_key) and new_key != old_key
    await page.screenshot(path=output_dir / "start-fresh-new-key.png")
    await setup.get_by_label("I have saved my recovery key").check()
    await setup.get_by_role("button", name="Continue").click()
    await expect(setup).to_be_hidden(timeout=20_000)
    await expect_unlocked(second)
    new_identity = await in_session(page, "return s.identityKey;")
    assert new_identity != old_identity

    # the server: a new identity with this one device; the backup opens with the new key only
    client = await sdk(shared_server, sdk_clients, people.alice)
    directory = await e2ee.fetch_keys(client, people.alice.username)
    assert b64e(directory.identity_key) == new_identity
    assert [d.device_id for d in directory.devices] == [
        await in_session(page, "return s.deviceId;")
    ]
    with pytest.raises(e2ee.E2EEError):
        await e2ee.load_backup(client, old_key)
    assert len((await e2ee.load_backup(client, new_key)).keyring.devices) == 1

    # bob's browser is warned (keys.changed, then a verified comparison with the pin) ...
    await trust_events(bob.page, 1)
    assert await bob.page.evaluate("window.__trust") == [
        {"peer": people.alice.username, "kind": "identity_changed"}
    ]
    refused = await in_session(
        bob.page,
        "try { await s.sealDm(arg, {type: 'text', text: 'x'}, 'c-9'); return 'sealed'; }"
        " catch (e) { return [e.code, e.message]; }",
        people.alice.username,
    )
    assert refused[0] == "identity_changed" and "safety numbers" in refused[1]
    # ... and alice's first browser, whose keys are gone, locks and says why
    await expect(lock(first)).to_have_attribute("data-state", "locked")
    stale = first.page.get_by_role("dialog", name="Unlock your messages")
    await expect(stale).to_contain_text("replaced in another browser")
    await first.page.screenshot(path=output_dir / "other-browser-locked.png")
    # a reload finds the old keys in IndexedDB, checks them first, and stays locked
    await first.page.reload()
    await first.connected()
    await expect(stale).to_contain_text("replaced in another browser")
    await expect(lock(first)).to_have_attribute("data-state", "locked")
    await restore(first, new_key)
    for chat in (first, second, bob):
        await chat.assert_clean()


async def test_no_backup_offers_only_a_fresh_start(
    shared_server: LiveServer,
    people: Cast,
    new_context: NewContext,
    watch: Watch,
    sdk_clients: list[EchoChatClient],
    output_dir: Path,
) -> None:
    await register(shared_server, people.alice)
    await sdk_user(
        await sdk(shared_server, sdk_clients, people.alice), "alice-bot-0001"
    )  # no backup
    chat = await first_chat(new_context, watch, shared_server, people.alice)
    fresh = chat.page.get_by_role("dialog", name="Start fresh?")
    await expect(fresh).to_be_visible()
    await expect(fresh).to_contain_text("no backup of them exists")
    await chat.page.screenshot(path=output_dir / "no-backup.png")
    await fresh.get_by_role("button", name="Not now").click()
    await expect(fresh).to_be_hidden()
    await expect(chat.page.locator("#keys-alert")).to_contain_text("cannot be restored here")
    await chat.page.locator("#keys-alert").get_by_role("button", name="Options").click()
    await expect(fresh).to_be_visible()
    await chat.assert_clean()


# --- trust: safety numbers, verification, devices --------------------------------------------


def segno_matrix(payload: str, **options: Any) -> tuple[int, int, list[str]]:
    """segno's QR code for ``payload`` in byte mode, with ISO 18004 7.4.10's padding rule
    ("padding bits ... if the bit stream does not end at a codeword boundary"): segno 1.6
    adds 8 zero bits when it does end there (heuer/segno#148), which only changes the pad
    codewords; the fix proposed in that issue is applied for the comparison."""
    original = segno.encoder.write_padding_bits

    def iso_padding(buff: Any, version: int, length: int) -> None:
        buff.extend([0] * (-length % 8))

    segno.encoder.write_padding_bits = iso_padding
    try:
        code = segno.make_qr(payload.encode(), mode="byte", boost_error=False, **options)
    finally:
        segno.encoder.write_padding_bits = original
    rows = ["".join("1" if m else "0" for m in row) for row in code.matrix]
    return int(code.version), int(code.mask), rows


def svg_matrix(path: str, quiet: int = 4) -> list[str]:
    """The module rows of the SVG path ``qrSvg`` draws (one ``M{x} {y}h1v1h-1z`` per module)."""
    cells = {(int(y) - quiet, int(x) - quiet) for x, y in re.findall(r"M(\d+) (\d+)h1v1h-1z", path)}
    size = max(max(r, c) for r, c in cells) + 1
    return ["".join("1" if (r, c) in cells else "0" for c in range(size)) for r in range(size)]


async def test_qr_encoder_matches_segno(shared_server: LiveServer, page: Page) -> None:
    await page.goto(shared_server.url + "/login")
    cases: list[dict[str, Any]] = []
    payload = "echochat-safety:1:" + "0123456789abcdef" * 4
    for mask in range(8):
        cases.append({"text": payload, "ecc": "M", "mask": mask})
    for version in (1, 2, 6, 7, 10, 14, 21, 27, 32, 40):
        for ecc in "LMQH":
            cases.append({"text": "safety", "ecc": ecc, "version": version, "mask": version % 8})
    for text in ["a", "Hello, world!", "ünïcødé 😀 text", "x" * 100, "y" * 300, payload]:
        cases.append({"text": text, "ecc": "M"})
    got = await page.evaluate(
        """async (cases) => {
          const qr = await import("/static/js/ui/qr.js");
          return cases.map((c) => {
            const code = qr.encodeQr(c.text, {ecc: c.ecc, version: c.version, mask: c.mask});
            return [code.version, code.mask, qr.qrRows(code)];
          });
        }""",
        cases,
    )
    for case, (version, mask, rows) in zip(cases, got, strict=True):
        expected = segno_matrix(
            case["text"], error=case["ecc"], version=case.get("version"), mask=case.get("mask")
        )
        assert (version, mask, rows) == expected, case
    # the safety payload: 82 bytes fit version 5 at level M (84 at most); a fixed mask choice
    version, mask, _ = got[-1]
    assert (version, mask) == (5, segno_matrix(payload, error="M")[1])
    # the only difference to unpatched segno is the pad codewords (heuer/segno#148)
    raw = segno.make_qr(payload.encode(), mode="byte", error="M", mask=mask, boost_error=False)
    assert raw.version == 5 and ["".join(map(str, r)) for r in raw.matrix] != got[-1][2]
    refused = await page.evaluate(
        """async () => {
          const qr = await import("/static/js/ui/qr.js");
          const out = [];
          for (const args of [["x".repeat(3000), {}], ["abc", {version: 41}], ["abc", {mask: 8}],
                              ["x".repeat(20), {ecc: "H", version: 1}], ["abc", {ecc: "X"}]]) {
            try { qr.encodeQr(...args); out.push("ok"); } catch (e) { out.push(e.name); }
          }
          return out;
        }"""
    )
    assert refused == ["RangeError"] * 5


async def test_safety_number_the_same_on_both_sides_with_qr_and_verified(
    shared_server: LiveServer,
    people: Cast,
    new_context: NewContext,
    watch: Watch,
    sdk_clients: list[EchoChatClient],
    output_dir: Path,
) -> None:
    await register(shared_server, people.alice, people.bob)
    await befriend(shared_server, people.alice, people.bob)
    alice = await first_chat(new_context, watch, shared_server, people.alice)
    await set_up_recovery_key(alice)
    bob = await first_chat(new_context, watch, shared_server, people.bob)
    await set_up_recovery_key(bob)

    async def show(chat: Chat, peer: str) -> Locator:
        await chat.page.evaluate(
            """async (peer) => {
              const ks = await import("/static/js/state/keysession.js");
              const { showSafetyNumber } = await import("/static/js/ui/safety.js");
              showSafetyNumber(ks.currentSession(), peer);
            }""",
            peer,
        )
        dialog = chat.page.get_by_role("dialog", name=f"Safety number with {peer}")
        await expect(dialog).to_be_visible()
        await expect(dialog.locator(".safety__group")).to_have_count(12)
        return dialog

    alice_dialog = await show(alice, people.bob.username)
    bob_dialog = await show(bob, people.alice.username)
    alice_groups = await alice_dialog.locator(".safety__group").all_text_contents()
    bob_groups = await bob_dialog.locator(".safety__group").all_text_contents()
    assert alice_groups == bob_groups
    assert all(re.fullmatch(r"\d{5}", g) for g in alice_groups)
    client = await sdk(shared_server, sdk_clients, people.alice)
    number = e2ee.safety_number(
        people.alice.username,
        (await e2ee.fetch_keys(client, people.alice.username)).identity_key,
        people.bob.username,
        (await e2ee.fetch_keys(client, people.bob.username)).identity_key,
    )
    assert " ".join(alice_groups) == str(number)
    # the QR code, module for module, is segno's for the same payload
    for dialog in (alice_dialog, bob_dialog):
        svg = dialog.locator("svg.qr")
        await expect(svg).to_have_attribute("data-version", "5")
        d = await svg.locator("path").get_attribute("d")
        version, mask, rows = segno_matrix(number.qr_payload, error="M")
        assert version == 5
        assert svg_matrix(d or "") == rows
        await expect(svg).to_have_attribute("data-mask", str(mask))
    await expect(alice_dialog.locator("#safety-state")).to_have_text("Not verified yet")
    await alice.page.screenshot(path=output_dir / "safety-number.png")

    await alice_dialog.get_by_role("button", name="Mark as verified").click()
    await expect(alice_dialog.locator("#safety-state")).to_have_text(
        f"Verified: you compared safety numbers with {people.bob.username}"
    )
    await expect(alice_dialog.get_by_role("button", name="Unmark as verified")).to_be_visible()
    await alice.page.screenshot(path=output_dir / "safety-number-verified.png")
    await alice_dialog.locator(".dialog__actions").get_by_role("button", name="Close").click()

    await alice.page.reload()
    await alice.connected()
    await expect_unlocked(alice)
    again = await show(alice, people.bob.username)
    await expect(again.locator("#safety-state")).to_have_text(
        f"Verified: you compared safety numbers with {people.bob.username}"
    )
    assert (
        await in_session(alice.page, "return (await s.trust(arg)).verified;", people.bob.username)
        is True
    )
    await again.get_by_role("button", name="Unmark as verified").click()
    await expect(again.locator("#safety-state")).to_have_text("Not verified yet")
    assert (
        await in_session(alice.page, "return (await s.trust(arg)).verified;", people.bob.username)
        is False
    )
    # bob never verified alice: verification is per side
    assert (
        await in_session(bob.page, "return (await s.trust(arg)).verified;", people.alice.username)
        is False
    )
    for chat in (alice, bob):
        await chat.assert_clean()


async def test_a_buddys_new_device_is_announced_and_a_changed_key_can_be_accepted(
    shared_server: LiveServer,
    people: Cast,
    new_context: NewContext,
    watch: Watch,
    sdk_clients: list[EchoChatClient],
    output_dir: Path,
) -> None:
    await register(shared_server, people.alice, people.bob)
    await befriend(shared_server, people.alice, people.bob)
    bob_sdk = await sdk(shared_server, sdk_clients, people.bob)
    ring, _ = await sdk_user(bob_sdk, "bob-phone-0001")
    alice = await first_chat(new_context, watch, shared_server, people.alice)
    await set_up_recovery_key(alice)
    page = alice.page
    before = await in_session(
        page,
        "window.__trust = []; s.on('trust', (e) => window.__trust.push(e));"
        " return (await s.trust(arg)).devices;",
        people.bob.username,
    )
    assert [(d["device_id"], d["isNew"]) for d in before] == [("bob-phone-0001", False)]

    # bob adds a device: alice's page hears keys.changed, checks, and announces it
    ring.add_device("bob-tablet-002")
    await e2ee.publish_device(bob_sdk, ring, "bob-tablet-002", label="Tablet")
    await trust_events(page, 1)
    assert await page.evaluate("window.__trust") == [
        {"peer": people.bob.username, "kind": "device_added", "device_id": "bob-tablet-002"}
    ]
    devices = await in_session(page, "return (await s.trust(arg)).devices;", people.bob.username)
    assert {d["device_id"]: d["isNew"] for d in devices} == {
        "bob-phone-0001": False,
        "bob-tablet-002": True,
    }
    # messages to bob now go to both of his devices
    sealed = await in_session(
        page, "return s.sealDm(arg, {type: 'text', text: 'yo'}, 'c-1');", people.bob.username
    )
    assert sorted(k["device"] for k in sealed["keys"] if k["user"] == people.bob.username) == [
        "bob-phone-0001",
        "bob-tablet-002",
    ]
    await page.evaluate(
        """async (peer) => {
          const ks = await import("/static/js/state/keysession.js");
          const { showSafetyNumber } = await import("/static/js/ui/safety.js");
          showSafetyNumber(ks.currentSession(), peer);
        }""",
        people.bob.username,
    )
    dialog = page.get_by_role("dialog", name=f"Safety number with {people.bob.username}")
    await expect(dialog.locator(".safety__device", has_text="Tablet")).to_contain_text("new")
    await page.screenshot(path=output_dir / "safety-new-device.png")
    await dialog.locator(".dialog__actions").get_by_role("button", name="Close").click()

    # bob removes it again
    await e2ee.remove_device(bob_sdk, "bob-tablet-002")
    await trust_events(page, 2)
    assert (await page.evaluate("window.__trust[1]")) == {
        "peer": people.bob.username,
        "kind": "device_removed",
        "device_id": "bob-tablet-002",
    }

    # a device added while alice's page is closed is reported when she next looks
    await page.goto(shared_server.url + "/devices")
    ring.add_device("bob-laptop-03")
    await e2ee.publish_device(bob_sdk, ring, "bob-laptop-03", label="Laptop")
    await page.goto(shared_server.url + "/chat")
    await alice.connected()
    await expect_unlocked(alice)
    await in_session(page, "window.__trust = []; s.on('trust', (e) => window.__trust.push(e));")
    later = await in_session(page, "return (await s.trust(arg)).devices;", people.bob.username)
    assert {d["device_id"]: d["isNew"] for d in later} == {
        "bob-phone-0001": False,
        "bob-laptop-03": True,
    }
    assert await page.evaluate("window.__trust") == [
        {"peer": people.bob.username, "kind": "device_added", "device_id": "bob-laptop-03"}
    ]
    await page.evaluate("window.__trust = []")

    # bob starts fresh (a new identity): a warning; nothing is sealed to him until accepted
    fresh = Keyring.generate()
    fresh.add_device("bob-phone-0002")
    await e2ee.publish_device(bob_sdk, fresh, "bob-phone-0002", reset_identity=True)
    await trust_events(page, 1)
    assert (await page.evaluate("window.__trust[0]")) == {
        "peer": people.bob.username,
        "kind": "identity_changed",
    }
    await page.evaluate(
        """async (peer) => {
          const ks = await import("/static/js/state/keysession.js");
          const { showSafetyNumber } = await import("/static/js/ui/safety.js");
          showSafetyNumber(ks.currentSession(), peer);
        }""",
        people.bob.username,
    )
    await expect(dialog.locator("#safety-changed")).to_contain_text(
        f"{people.bob.username}'s keys changed."
    )
    await expect(dialog.locator("#safety-state")).to_have_text("New keys, not accepted yet")
    await page.screenshot(path=output_dir / "safety-keys-changed.png")
    number = e2ee.safety_number(
        people.alice.username,
        (await e2ee.fetch_keys(bob_sdk, people.alice.username)).identity_key,
        people.bob.username,
        fresh.identity_key,
    )
    assert " ".join(await dialog.locator(".safety__group").all_text_contents()) == str(number)
    await expect(dialog.get_by_role("button", name="Accept as verified")).to_be_visible()
    await dialog.get_by_role("button", name="Accept the new keys").click()
    await expect(dialog.locator("#safety-changed")).to_be_hidden()
    await expect(dialog.locator("#safety-state")).to_have_text("Not verified yet")
    sealed = await in_session(
        page, "return s.sealDm(arg, {type: 'text', text: 'ok'}, 'c-2');", people.bob.username
    )
    assert [k["device"] for k in sealed["keys"] if k["user"] == people.bob.username] == [
        "bob-phone-0002"
    ]
    assert (await page.evaluate("window.__trust[1]")) == {
        "peer": people.bob.username,
        "kind": "identity_accepted",
    }
    await alice.assert_clean()


# --- when encryption cannot work ---------------------------------------------------------------


async def test_no_secure_context_says_so(
    shared_server: LiveServer, people: Cast, new_context: NewContext, watch: Watch, output_dir: Path
) -> None:
    await register(shared_server, people.alice)
    context = await new_context()
    # What a page served over plain http from another host sees.
    await context.add_init_script(
        "Object.defineProperty(window, 'isSecureContext', { get: () => false });"
    )
    page = await context.new_page()
    problems = await watch(page)
    await sign_in(
        page, shared_server, people.alice.username, people.alice.password, "/login?next=/chat"
    )
    await page.wait_for_url(shared_server.url + "/chat")
    dialog = page.get_by_role("dialog", name="Encryption unavailable")
    await expect(dialog).to_contain_text("needs a secure connection")
    await expect(page.locator("#keys-alert")).to_contain_text("needs a secure connection")
    await expect(page.locator("#keys-lock")).to_have_attribute("data-state", "locked")
    await page.screenshot(path=output_dir / "insecure.png")
    await problems.assert_clean()


# A server of its own: its backup download limit (2 an hour per account) is too low for the
# other journeys, which download their users' backups several times.
async def test_too_many_backup_downloads_say_so(
    live_server_factory: Any,
    new_context: NewContext,
    watch: Watch,
    sdk_clients: list[EchoChatClient],
    output_dir: Path,
) -> None:
    server: LiveServer = live_server_factory({"ECHOCHAT_RATE_LIMIT_BACKUP_ACCOUNT": "2/hour"})
    await register(server, ALICE)
    chat = await first_chat(new_context, watch, server, ALICE)  # asks once: "no backup yet"
    await set_up_recovery_key(chat)
    second = await open_chat(
        new_context, watch, server, ALICE, dismiss_keys=False
    )  # downloads once
    await expect(second.page.get_by_role("dialog", name="Unlock your messages")).to_be_visible()
    third = await open_chat(new_context, watch, server, ALICE, dismiss_keys=False)
    third.problems.expect_refusal("/api/v1/keys/backup", 429)
    dialog = third.page.get_by_role("dialog", name="Encryption unavailable")
    await expect(dialog).to_contain_text("Too many key-backup downloads")
    # the window may be a fixed hour: near its end the wait is in seconds
    await expect(dialog).to_contain_text(re.compile(r"try again in \d+ (second|minute)s?\."))
    await third.page.screenshot(path=output_dir / "rate-limited.png")
    for each in (chat, second, third):
        await each.assert_clean()
