"""E2EE suite v1 in Chromium (``/static/js/crypto/*.js``, spec ``docs/e2ee.md``).

The browser modules are imported with ``import()`` into a page of the live server (same
origin, so the CSP's ``script-src 'self'`` allows them) and driven with ``page.evaluate``:

- RFC 9180 A.1.1 step by step (DeriveKeyPair, Encap/Decap, the key schedule, every
  published ciphertext with its AAD) against the HPKE composed from WebCrypto;
- every deterministic value of ``tests/vectors/e2ee_v1.json`` byte for byte (public keys,
  device statements and certificates, payloads, AADs, infos, body ciphertexts, signature
  inputs and signatures, whole envelopes, safety number, recovery key, keyring, derived
  key and backup blob), every fixed envelope opened, every refusal refused with its code,
  the real 600,000-iteration backup opened and its refusals refused;
- both directions against the Python SDK: envelopes and backups made by one side open on
  the other;
- keys generated in the browser are non-extractable CryptoKeys, and survive a reload in
  IndexedDB with the pinned identity keys.

Each page must stay free of console errors. PBKDF2 at 600,000 iterations costs well under
a second here; the backup tests run it about ten times in all.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page

from echochat.client import e2ee
from echochat.client.e2ee import (
    E2EEError,
    Keyring,
    decrypt_backup,
    encrypt_backup,
    open_envelope,
    seal,
    verify_directory,
)
from echochat.domain.e2ee import b64d, b64e, envelope_size
from tests.conftest import LiveServer
from tests.e2e.conftest import PageWatch, Watch

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]
VECTORS: dict[str, Any] = json.loads((ROOT / "tests" / "vectors" / "e2ee_v1.json").read_text())
# RFC 9180 Appendix A.1.1 as published (copied from ../shared/vectors into the repository).
RFC9180_A11 = ROOT / "tests" / "vectors" / "rfc9180-a11-x25519-hkdfsha256-aes128gcm-base.json"
USERS: dict[str, Any] = VECTORS["users"]
BACKUP: dict[str, Any] = VECTORS["backup"]

# Every evaluation starts with the modules imported and a few helpers in scope.
PRELUDE = """
const e2ee = await import("/static/js/crypto/e2ee.js");
const hpke = await import("/static/js/crypto/hpke.js");
const enc = await import("/static/js/crypto/encoding.js");
const keys = await import("/static/js/crypto/keys.js");
const keystore = await import("/static/js/crypto/keystore.js");
const { hex, unhex } = enc;
/** The E2EEError code an async action fails with, or "ok". */
const codeOf = async (action) => {
  try {
    await action();
    return "ok";
  } catch (error) {
    if (error instanceof e2ee.E2EEError) return error.code;
    throw error;
  }
};
/** A vector user's keyring from its private keys. */
const vectorKeyring = (user) => e2ee.Keyring.fromPrivateBytes(
  unhex(user.identity_private_hex),
  Object.fromEntries(user.devices.map(
    (d) => [d.device_id, [unhex(d.x25519_private_hex), unhex(d.ed25519_private_hex)]])),
);
/** A receiving device from a vector row (only its X25519 key matters for opening). */
const receiver = (row) => e2ee.DeviceKeys.fromPrivateBytes(
  row.device, unhex(row.x25519_private_hex), new Uint8Array(32));
"""


async def run(page: Page, body: str, arg: Any = None) -> Any:
    """Evaluate ``body`` (the inside of an async function of ``arg``) after the PRELUDE."""
    return await page.evaluate(f"async (arg) => {{\n{PRELUDE}\n{body}\n}}", arg)


@pytest_asyncio.fixture(loop_scope="session")
async def crypto_page(
    shared_server: LiveServer, page: Page, watch: Watch
) -> tuple[Page, PageWatch]:
    """A page of the live server that the crypto modules are imported into, watched."""
    problems = await watch(page)
    await page.goto(shared_server.url + "/login")
    return page, problems


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def vector_keyring(user: str) -> Keyring:
    data = USERS[user]
    return Keyring.from_private_bytes(
        h(data["identity_private_hex"]),
        {
            d["device_id"]: (h(d["x25519_private_hex"]), h(d["ed25519_private_hex"]))
            for d in data["devices"]
        },
    )


def directory(user: str) -> e2ee.KeyDirectory:
    data = USERS[user]["directory"]
    return verify_directory(data["username"], data["identity_key"], data["devices"])


# --- RFC 9180 ------------------------------------------------------------------------------------


async def test_rfc9180_a11_step_by_step(crypto_page: tuple[Page, PageWatch]) -> None:
    rfc = json.loads(RFC9180_A11.read_text())
    page, problems = crypto_page
    got = await run(
        page,
        """
        const s = arg.setup;
        const aead = s.aead_id;
        const skEm = await hpke.derivePrivateKey(unhex(s.ikmE));
        const skRm = await hpke.derivePrivateKey(unhex(s.ikmR));
        const eph = await keys.keyPairFromPrivate("X25519", skEm);
        const rcp = await keys.keyPairFromPrivate("X25519", skRm);
        const sent = await hpke.encap(rcp.publicKey, eph);
        const received = await hpke.decap(sent.enc, rcp.privateKey, rcp.publicKey);
        const sched = await hpke.keySchedule(aead, sent.sharedSecret, unhex(s.info));
        const sender = await hpke.setupBaseS(aead, rcp.publicKey, unhex(s.info), eph);
        const recipient = await hpke.setupBaseR(
          aead, sent.enc, rcp.privateKey, rcp.publicKey, unhex(s.info));
        const encryptions = [];
        for (const e of arg.encryptions) {
          const seq = Number(e.sequence_number);
          const nonce = hpke.computeNonce(recipient.baseNonce, seq);
          const ct = await hpke.aeadSeal(sender.key, nonce, unhex(e.aad), unhex(e.pt));
          const pt = await hpke.aeadOpen(recipient.key, nonce, unhex(e.aad), unhex(e.ct));
          encryptions.push({ nonce: hex(nonce), ct: hex(ct), pt: hex(pt) });
        }
        const first = arg.encryptions[0];
        const single = await hpke.seal(
          aead, rcp.publicKey, unhex(s.info), unhex(first.aad), unhex(first.pt), eph);
        const opened = await hpke.open(aead, single.enc, rcp.privateKey, rcp.publicKey,
          unhex(s.info), unhex(first.aad), single.ciphertext);
        const wrongAad = await hpke.open(aead, single.enc, rcp.privateKey, rcp.publicKey,
          unhex(s.info), new Uint8Array(0), single.ciphertext).then(() => "opened", (e) => e.name);
        return {
          skEm: hex(skEm), skRm: hex(skRm), pkEm: hex(eph.publicKey), pkRm: hex(rcp.publicKey),
          enc: hex(sent.enc), shared_secret: hex(sent.sharedSecret),
          shared_secret_decap: hex(received),
          key_schedule_context: hex(sched.keyScheduleContext), secret: hex(sched.secret),
          key: hex(sched.key), base_nonce: hex(sched.baseNonce),
          exporter_secret: hex(sched.exporterSecret),
          sender_key: hex(sender.key), sender_enc: hex(sender.enc),
          encryptions,
          single_enc: hex(single.enc), single_ct: hex(single.ciphertext), single_pt: hex(opened),
          wrong_aad: wrongAad,
        };
        """,
        rfc,
    )
    setup = rfc["setup"]
    assert (setup["mode"], setup["kem_id"], setup["kdf_id"], setup["aead_id"]) == (0, 32, 1, 1)
    for field in ("skEm", "skRm", "pkEm", "pkRm", "enc", "shared_secret"):
        assert got[field] == setup[field], field
    assert got["shared_secret_decap"] == setup["shared_secret"]
    for field in ("key_schedule_context", "secret", "key", "base_nonce", "exporter_secret"):
        assert got[field] == setup[field], field
    assert (got["sender_key"], got["sender_enc"]) == (setup["key"], setup["enc"])
    assert len(got["encryptions"]) == len(rfc["encryptions"]) == 6
    for mine, theirs in zip(got["encryptions"], rfc["encryptions"], strict=True):
        assert mine == {"nonce": theirs["nonce"], "ct": theirs["ct"], "pt": theirs["pt"]}
    first = rfc["encryptions"][0]
    assert (got["single_enc"], got["single_ct"]) == (setup["enc"], first["ct"])
    assert got["single_pt"] == first["pt"]
    assert got["wrong_aad"] == "HpkeError"
    await problems.assert_clean()


# --- encodings, keys and certificates ------------------------------------------------------------


async def test_encodings_keys_and_certificates(crypto_page: tuple[Page, PageWatch]) -> None:
    page, problems = crypto_page
    alice = USERS["alice"]["directory"]
    messy = [
        alice["devices"][0],
        alice["devices"][1],
        alice["devices"][0],  # listed twice: both copies go
        {**alice["devices"][1], "device_id": "bad id"},
        {**alice["devices"][1], "x25519": alice["devices"][1]["x25519"] + "A"},
        {**alice["devices"][1], "device_id": "alice-phone-3"},  # not certified
    ]
    got = await run(
        page,
        """
        const b64 = (text) => { try { return hex(enc.b64d(text)); } catch (e) { return e.name; } };
        const users = {};
        for (const [name, user] of Object.entries(arg.users)) {
          const ring = await vectorKeyring(user);
          const devices = [];
          for (const d of user.devices) {
            const mine = ring.device(d.device_id);
            const cert = await ring.certify(name, d.device_id);
            devices.push({
              x25519_public_hex: hex(mine.x25519Public),
              ed25519_public_hex: hex(mine.ed25519Public),
              statement_hex: hex(e2ee.deviceStatement(
                name, d.device_id, mine.x25519Public, mine.ed25519Public)),
              signature_hex: hex(cert.signature),
              put_body: await ring.publishedDevice(name, d.device_id),
              extractable: [mine.x25519.extractable, mine.ed25519.extractable],
            });
          }
          const dir = user.directory;
          const verified = await e2ee.verifyDirectory(dir.username, dir.identity_key, dir.devices);
          users[name] = {
            identity_public_hex: hex(ring.identityKey),
            identity_key: enc.b64e(ring.identityKey),
            devices,
            directory: verified.devices.map(e2ee.publicDeviceToJson),
            rejected: verified.rejected,
            own_directory: (await ring.directory(name)).devices.map(e2ee.publicDeviceToJson),
          };
        }
        const bad = arg.uncertified;
        const filtered = await e2ee.verifyDirectory(bad.username, bad.identity_key, bad.devices);
        const alice = arg.users.alice.directory;
        const messy = await e2ee.verifyDirectory(
          "alice", arg.users.alice.directory.identity_key, arg.messy);
        return {
          lp: hex(enc.lp("echochat", "", new Uint8Array([0, 255]))),
          b64: {
            empty: b64(""), f: b64("Zg"), fo: b64("Zm8"), foo: b64("Zm9v"),
            url: b64("-_-_"), noncanonical: b64("Zh"), padded: b64("Zg=="),
            plus: b64("+/+/"), space: b64("Zm9v "), one: b64("Zm9vY"),
          },
          roundtrip: enc.b64e(enc.b64d(enc.b64e(new Uint8Array(256).map((_, i) => i)))),
          utf8: hex(enc.utf8("é€😀")),
          users,
          filtered: filtered.devices.map((d) => d.deviceId),
          filtered_rejected: filtered.rejected,
          messy: messy.devices.map((d) => d.deviceId),
          messy_rejected: messy.rejected,
          dm: e2ee.dmConversation(" Bob ", "alice"),
          server: {
            devices: (await e2ee.directoryFromServer(alice, "alice")).devices.length,
            pinned: (await e2ee.directoryFromServer(
              alice, "alice", enc.b64d(alice.identity_key))).devices.length,
            changed: await codeOf(() => e2ee.directoryFromServer(
              alice, "alice", enc.b64d(arg.users.bob.identity_key))),
            no_keys: await codeOf(() => e2ee.directoryFromServer(
              { ...alice, identity_key: null, devices: [] }, "alice")),
            other_user: await codeOf(() => e2ee.directoryFromServer(alice, "bob")),
          },
        };
        """,
        {
            "users": USERS,
            "messy": messy,
            "uncertified": next(
                r for r in VECTORS["refusals"] if r["name"] == "device_not_certified"
            )["sender_keys"],
        },
    )
    assert got["lp"] == VECTORS["lp_example"]["hex"]
    assert got["b64"] == {
        "empty": "",
        "f": "66",
        "fo": "666f",
        "foo": "666f6f",
        "url": "fbffbf",
        "noncanonical": "EncodingError",
        "padded": "EncodingError",
        "plus": "EncodingError",
        "space": "EncodingError",
        "one": "EncodingError",
    }
    assert got["roundtrip"] == b64e(bytes(range(256)))
    assert got["utf8"] == "é€😀".encode().hex()
    for name, user in USERS.items():
        mine = got["users"][name]
        assert mine["identity_public_hex"] == user["identity_public_hex"]
        assert mine["identity_key"] == user["identity_key"]
        for ours, theirs in zip(mine["devices"], user["devices"], strict=True):
            for field in (
                "x25519_public_hex",
                "ed25519_public_hex",
                "statement_hex",
                "signature_hex",
                "put_body",
            ):
                assert ours[field] == theirs[field], (name, theirs["device_id"], field)
            assert ours["extractable"] == [False, False]
        assert mine["directory"] == user["directory"]["devices"]
        assert mine["own_directory"] == user["directory"]["devices"]
        assert mine["rejected"] == []
    assert got["filtered"] == ["alice-laptop-1", "alice-phone-2"]
    assert got["filtered_rejected"] == [
        {"deviceId": "alice-tablet-9", "code": "bad_device_signature"}
    ]
    python = verify_directory("alice", alice["identity_key"], messy)
    assert got["messy"] == [d.device_id for d in python.devices] == ["alice-phone-2"]
    assert [(r["deviceId"], r["code"]) for r in got["messy_rejected"]] == [
        tuple(r) for r in python.rejected
    ]
    assert len(python.rejected) == 4
    assert got["dm"] == "dm:alice:bob"
    assert got["server"] == {
        "devices": 2,
        "pinned": 2,
        "changed": "identity_changed",
        "no_keys": "no_keys",
        "other_user": "malformed",
    }
    await problems.assert_clean()


# --- envelopes -----------------------------------------------------------------------------------


async def test_vector_envelopes_reproduced_and_opened(crypto_page: tuple[Page, PageWatch]) -> None:
    page, problems = crypto_page
    got = await run(
        page,
        """
        const out = {};
        for (const c of arg.envelopes) {
          const ring = await vectorKeyring(arg.users[c.sender]);
          const sender = ring.device(c.sender_device);
          const plaintext = e2ee.encodePayload(c.payload);
          const wraps = new Map(c.wraps.map((w) => [`${w.user}/${w.device}`, enc.b64d(w.wrap)]));
          const recipients = c.wraps.map((w) => ({
            user: w.user, device: w.device, x25519: enc.b64d(w.x25519_public) }));
          const envelope = await e2ee.sealWith(plaintext, {
            conv: c.conv, sender: c.sender, senderDevice: sender, clientId: c.client_id,
            recipients: [...recipients].reverse(), contentKey: unhex(c.content_key_hex),
            nonce: unhex(c.nonce_hex), wraps,
          });
          const parsed = e2ee.parseEnvelope(c.envelope);
          const unwrapped = [];
          for (const row of c.opens_for) {
            const me = await receiver(row);
            const w = c.wraps.find((x) => x.user === row.user && x.device === row.device);
            const info = e2ee.wrapInfo(c.conv, c.sender, c.sender_device, row.user, row.device,
              c.client_id);
            const key = await hpke.open(hpke.AEAD_AES_256_GCM, unhex(w.enc_hex), me.x25519,
              me.x25519Public, info, new Uint8Array(0), unhex(w.sealed_key_hex));
            unwrapped.push(hex(key));
          }
          const opened = [];
          const senderKeys = e2ee.parseDirectory(c.sender_keys);
          for (const row of c.opens_for) {
            const o = await e2ee.openEnvelope(c.envelope, {
              expectedConv: c.conv, meUser: row.user, myDevice: await receiver(row), senderKeys,
              trustedIdentity: enc.b64d(c.sender_keys.identity_key),
            });
            opened.push({ payload: o.payload, plaintext: hex(o.plaintext), conv: o.conv,
              sender: o.sender, sender_device: o.senderDevice, client_id: o.clientId });
          }
          const notFor = [];
          for (const row of c.not_for) {
            notFor.push(await codeOf(async () => e2ee.openEnvelope(c.envelope, {
              expectedConv: c.conv, meUser: row.user, myDevice: await receiver(row), senderKeys,
            })));
          }
          out[c.name] = {
            plaintext_hex: hex(plaintext),
            body_aad_hex: hex(e2ee.bodyAad(c.conv, c.sender, c.sender_device, c.client_id)),
            info_hex: c.wraps.map((w) => hex(e2ee.wrapInfo(
              c.conv, c.sender, c.sender_device, w.user, w.device, c.client_id))),
            wrap_split: c.wraps.map((w) => {
              const raw = enc.b64d(w.wrap);
              return [hex(raw.subarray(0, 32)), hex(raw.subarray(32))];
            }),
            signature_input_hex: hex(e2ee.signatureInput(parsed.conv, parsed.sender,
              parsed.senderDevice, parsed.clientId, parsed.nonce, parsed.ct, parsed.keys)),
            body_ct_hex: hex(parsed.ct),
            envelope,
            unwrapped,
            opened,
            not_for: notFor,
          };
        }
        return out;
        """,
        {"envelopes": VECTORS["envelopes"], "users": USERS},
    )
    assert set(got) == {"single_recipient", "multi_device", "non_ascii"}
    for case in VECTORS["envelopes"]:
        mine = got[case["name"]]
        assert mine["plaintext_hex"] == case["plaintext_hex"]
        assert mine["body_aad_hex"] == case["body_aad_hex"]
        assert mine["info_hex"] == [w["info_hex"] for w in case["wraps"]]
        assert mine["wrap_split"] == [[w["enc_hex"], w["sealed_key_hex"]] for w in case["wraps"]]
        assert mine["signature_input_hex"] == case["signature_input_hex"]
        assert mine["body_ct_hex"] == case["body_ct_hex"]
        # The whole envelope, body ciphertext and signature included, byte for byte.
        assert mine["envelope"] == case["envelope"]
        assert json.dumps(mine["envelope"]) == json.dumps(case["envelope"])
        assert b64d(mine["envelope"]["sig"]).hex() == case["signature_hex"]
        assert mine["unwrapped"] == [case["content_key_hex"]] * len(case["opens_for"])
        for opened in mine["opened"]:
            assert opened == {
                "payload": case["payload"],
                "plaintext": case["plaintext_hex"],
                "conv": case["conv"],
                "sender": case["sender"],
                "sender_device": case["sender_device"],
                "client_id": case["client_id"],
            }
        assert len(mine["opened"]) == len(case["opens_for"]) >= 1
        assert mine["not_for"] == ["not_a_recipient"] * len(case["not_for"])
    await problems.assert_clean()


async def test_every_refusal_is_refused_with_its_code(crypto_page: tuple[Page, PageWatch]) -> None:
    page, problems = crypto_page
    got = await run(
        page,
        """
        const out = {};
        for (const c of arg) {
          const senderKeys = e2ee.parseDirectory(c.sender_keys);
          out[c.name] = await codeOf(async () => e2ee.openEnvelope(c.envelope, {
            expectedConv: c.expected_conv, meUser: c.recipient.user,
            myDevice: await receiver(c.recipient), senderKeys,
            trustedIdentity: c.trusted_identity ? enc.b64d(c.trusted_identity) : null,
          }));
        }
        // The size limit is measured as the SDK and the server measure it.
        const sizes = Object.fromEntries(arg.map((r) => [r.name, e2ee.envelopeSize(r.envelope)]));
        const big = { ...arg[0].envelope, conv: "x".repeat(60 * 1024) };
        out.too_large = await codeOf(async () => e2ee.parseEnvelope(big));
        out.sizes = sizes;
        // What a client that filters the directory first sees for an uncertified device.
        const c = arg.find((r) => r.name === "device_not_certified");
        const dir = c.sender_keys;
        const filtered = await e2ee.verifyDirectory(dir.username, dir.identity_key, dir.devices);
        out.device_not_certified_filtered = await codeOf(async () => e2ee.openEnvelope(
          c.envelope, { expectedConv: c.expected_conv, meUser: c.recipient.user,
            myDevice: await receiver(c.recipient), senderKeys: filtered }));
        return out;
        """,
        VECTORS["refusals"],
    )
    expected = {case["name"]: case["error"] for case in VECTORS["refusals"]}
    expected["device_not_certified_filtered"] = "unknown_sender_device"
    expected["too_large"] = "malformed"
    sizes = got.pop("sizes")
    assert got == expected
    assert sizes == {c["name"]: envelope_size(c["envelope"]) for c in VECTORS["refusals"]}
    await problems.assert_clean()


async def test_fresh_envelopes_cross_between_browser_and_python(
    crypto_page: tuple[Page, PageWatch],
) -> None:
    """The browser seals (multi-device, non-ASCII, with the sending device's self-wrap) and
    Python opens; Python seals and the browser opens; neither opens for a device that is
    not a recipient."""
    page, problems = crypto_page
    text = 'Zoë 👩‍👩‍👧 你好 مرحبا שלום e\u0301 "quoted" \\ \n\t\u2028 end'
    client_id = "m-✓-ü-🔑"
    alice, bob = vector_keyring("alice"), vector_keyring("bob")
    from_python = [
        e2ee.seal_dm(
            text,
            sender="bob",
            sender_device_keys=bob.device("bob-phone-01"),
            peer=directory("alice"),
            own=directory("bob"),
            client_id=client_id,
        ),
        seal(
            e2ee.encode_payload({"type": "text", "text": "one device"}),
            conv="dm:alice:bob",
            sender="bob",
            sender_device_keys=bob.device("bob_laptop-2"),
            client_id="1",
            recipients=[("alice", "alice-phone-2", alice.device("alice-phone-2").x25519_public)],
        ),
    ]
    got = await run(
        page,
        """
        const { users, text, clientId, fromPython } = arg;
        const alice = await vectorKeyring(users.alice);
        const bob = await vectorKeyring(users.bob);
        const dir = async (name) => e2ee.verifyDirectory(
          name, users[name].directory.identity_key, users[name].directory.devices);
        const laptop = alice.device("alice-laptop-1");
        const multi = await e2ee.sealDm(text, {
          sender: "alice", senderDevice: laptop, peer: await dir("bob"), own: await dir("alice"),
          clientId,
        });
        const single = await e2ee.seal(e2ee.encodePayload({ type: "text", text: "hi" }), {
          conv: "dm:alice:bob", sender: "alice", senderDevice: laptop, clientId: "c-0001",
          recipients: [{ user: "bob", device: "bob-phone-01",
            x25519: bob.device("bob-phone-01").x25519Public }],
        });
        const opened = [];
        for (const [index, envelope] of fromPython.entries()) {
          const rows = [];
          for (const d of alice.devices.values()) {
            rows.push(await e2ee.openEnvelope(envelope, {
              expectedConv: "dm:alice:bob", meUser: "alice", myDevice: d,
              senderKeys: await dir("bob"), trustedIdentity: bob.identityKey,
            }).then((o) => ({ device: d.deviceId, payload: o.payload, client_id: o.clientId }),
              (e) => ({ device: d.deviceId, error: e.code })));
          }
          opened.push(rows);
        }
        const aliceDir = await dir("alice");
        const refusals = {
          not_in_own_directory: await codeOf(async () => e2ee.sealDm("x", {
            sender: "alice", senderDevice: laptop, peer: await dir("bob"),
            own: { ...aliceDir, devices: aliceDir.devices.slice(1) }, clientId: "x",
          })),
          listed_with_other_keys: await codeOf(async () => e2ee.sealDm("x", {
            sender: "alice", senderDevice: alice.device("alice-phone-2"), peer: await dir("bob"),
            own: { ...aliceDir, devices: aliceDir.devices.map((d) => ({ ...d,
              deviceId: d.deviceId === "alice-laptop-1" ? "alice-phone-2" : "alice-laptop-1" })) },
            clientId: "x",
          })),
          own_is_not_the_sender: await codeOf(async () => e2ee.sealDm("x", {
            sender: "alice", senderDevice: laptop, peer: await dir("bob"), own: await dir("bob"),
            clientId: "x",
          })),
          outsider: await codeOf(() => e2ee.seal(new Uint8Array(2), {
            conv: "dm:alice:bob", sender: "alice", senderDevice: laptop, clientId: "x",
            recipients: [{ user: "carol", device: "carol-phone-1", x25519: laptop.x25519Public }],
          })),
          none: await codeOf(() => e2ee.seal(new Uint8Array(2), {
            conv: "dm:alice:bob", sender: "alice", senderDevice: laptop, clientId: "x",
            recipients: [],
          })),
          low_order: await codeOf(() => e2ee.seal(new Uint8Array(2), {
            conv: "dm:alice:bob", sender: "alice", senderDevice: laptop, clientId: "x",
            recipients: [{ user: "bob", device: "bob-phone-01", x25519: new Uint8Array(32) }],
          })),
          too_large: await codeOf(async () => e2ee.sealDm("x".repeat(16384), {
            sender: "alice", senderDevice: laptop, peer: await dir("bob"), own: await dir("alice"),
            clientId: "x",
          })),
          long_client_id: await codeOf(async () => e2ee.sealDm("x", {
            sender: "alice", senderDevice: laptop, peer: await dir("bob"), own: await dir("alice"),
            clientId: "🔑".repeat(65),
          })),
        };
        return { multi, single, opened, refusals };
        """,
        {"users": USERS, "text": text, "clientId": client_id, "fromPython": from_python},
    )

    # Python opens what the browser sealed, for every recipient device.
    multi = got["multi"]
    assert [(k["user"], k["device"]) for k in multi["keys"]] == [
        ("alice", "alice-laptop-1"),  # the sending device's self-wrap
        ("alice", "alice-phone-2"),
        ("bob", "Zed-tablet-3"),
        ("bob", "bob-phone-01"),
        ("bob", "bob_laptop-2"),
    ]
    for user, keyring in (("alice", alice), ("bob", bob)):
        for keys in keyring.devices.values():
            opened = open_envelope(
                multi,
                expected_conv="dm:alice:bob",
                me_user=user,
                my_device_keys=keys,
                sender_keys=directory("alice"),
                trusted_identity=alice.identity_key,
            )
            assert opened.payload == {"type": "text", "text": text}
            assert opened.plaintext == e2ee.encode_payload({"type": "text", "text": text})
            assert opened.client_id == client_id
    with pytest.raises(E2EEError, check=lambda e: e.code == "not_a_recipient"):
        open_envelope(
            got["single"],
            expected_conv="dm:alice:bob",
            me_user="alice",
            my_device_keys=alice.device("alice-laptop-1"),
            sender_keys=directory("alice"),
        )
    single = open_envelope(
        got["single"],
        expected_conv="dm:alice:bob",
        me_user="bob",
        my_device_keys=bob.device("bob-phone-01"),
        sender_keys=directory("alice"),
    )
    assert single.payload == {"type": "text", "text": "hi"}
    assert got["single"]["ct"] != VECTORS["envelopes"][0]["envelope"]["ct"]  # fresh key, nonce

    # The browser opens what Python sealed.
    first, second = got["opened"]
    assert first == [
        {
            "device": "alice-laptop-1",
            "payload": {"type": "text", "text": text},
            "client_id": client_id,
        },
        {
            "device": "alice-phone-2",
            "payload": {"type": "text", "text": text},
            "client_id": client_id,
        },
    ]
    assert second == [
        {"device": "alice-laptop-1", "error": "not_a_recipient"},
        {
            "device": "alice-phone-2",
            "payload": {"type": "text", "text": "one device"},
            "client_id": "1",
        },
    ]
    assert got["refusals"] == {
        "not_in_own_directory": "unknown_sender_device",
        "listed_with_other_keys": "device_conflict",
        "own_is_not_the_sender": "bad_recipient",
        "outsider": "bad_recipient",
        "none": "no_recipients",
        "low_order": "bad_recipient",
        "too_large": "too_large",
        "long_client_id": "malformed",
    }
    await problems.assert_clean()


# --- safety numbers and recovery keys ------------------------------------------------------------


async def test_safety_number_and_recovery_key(crypto_page: tuple[Page, PageWatch]) -> None:
    page, problems = crypto_page
    safety, recovery = VECTORS["safety_number"], VECTORS["recovery_key"]
    got = await run(
        page,
        """
        const { safety: s, recovery: r } = arg;
        const number = await e2ee.safetyNumber(s.user_a, s.identity_a, s.user_b, s.identity_b);
        const mirrored = await e2ee.safetyNumber(
          s.user_b, enc.b64d(s.identity_b), s.user_a, enc.b64d(s.identity_a));
        const other = await e2ee.safetyNumber(s.user_a, s.identity_a, s.user_b, new Uint8Array(32));
        const fresh = [];
        for (let i = 0; i < 20; i += 1) {
          const key = e2ee.newRecoveryKey();
          fresh.push([key, hex(e2ee.parseRecoveryKey(key))]);
        }
        const parsed = (text) => {
          const raw = e2ee.parseRecoveryKey(text);
          return raw && hex(raw);
        };
        return {
          digest_hex: hex(number.digest),
          digits: number.digits,
          display: String(number),
          groups: number.groups,
          qr_payload: number.qrPayload,
          mirrored: mirrored.equals(number),
          other: other.equals(number) || other.matchesQr(s.qr_payload),
          matches_upper: number.matchesQr(` ${s.qr_payload.toUpperCase()}\\n`),
          formatted: e2ee.formatRecoveryKey(unhex(r.raw_hex)),
          accepted: r.accepted_inputs.map(parsed),
          accepted_secret: r.accepted_inputs.map((t) => hex(e2ee.backupSecret(t))),
          not_keys: r.not_recovery_keys.map(parsed),
          not_keys_secret: r.not_recovery_keys.map((t) => hex(e2ee.backupSecret(t))),
          fresh,
        };
        """,
        {"safety": safety, "recovery": recovery},
    )
    assert got["digest_hex"] == safety["digest_hex"]
    assert got["digits"] == safety["digits"]
    assert got["display"] == safety["display"]
    assert got["groups"] == safety["display"].split(" ")
    assert got["qr_payload"] == safety["qr_payload"]
    assert got["mirrored"] and got["matches_upper"] and not got["other"]
    assert got["formatted"] == recovery["formatted"]
    assert got["accepted"] == [recovery["raw_hex"]] * len(recovery["accepted_inputs"])
    assert got["accepted_secret"] == [recovery["raw_hex"]] * len(recovery["accepted_inputs"])
    assert got["not_keys"] == [None] * len(recovery["not_recovery_keys"])
    assert got["not_keys_secret"] == [
        unicodedata.normalize("NFC", t).encode().hex() for t in recovery["not_recovery_keys"]
    ]
    for key, raw in got["fresh"]:
        assert e2ee.parse_recovery_key(key) == h(raw)
        assert e2ee.format_recovery_key(h(raw)) == key
    assert len({raw for _, raw in got["fresh"]}) == 20
    await problems.assert_clean()


# --- the key backup ------------------------------------------------------------------------------


async def test_backup_vector_reproduced_opened_and_refused(
    crypto_page: tuple[Page, PageWatch],
) -> None:
    page, problems = crypto_page
    got = await run(
        page,
        """
        const b = arg;
        const ring = await e2ee.Keyring.fromJson(b.keyring);
        const secret = e2ee.backupSecret(b.passphrase);
        const derived = await e2ee.deriveBackupKey(secret, unhex(b.salt_hex), b.iterations);
        const blob = await e2ee.sealBackupWith(ring.export(), secret, b.username, b.iterations,
          unhex(b.salt_hex), unhex(b.nonce_hex));
        const started = performance.now();
        const restored = await e2ee.decryptBackup(b.blob, b.passphrase, b.username);
        const openMs = performance.now() - started;
        const refusals = {};
        for (const r of b.refusals) {
          refusals[r.name] = await codeOf(() => e2ee.decryptBackup(r.blob, r.secret, r.username));
        }
        const parsed = JSON.parse(b.blob);
        const variant = (change) => JSON.stringify({ ...parsed, ...change });
        const refuse = (blob) => codeOf(() => e2ee.decryptBackup(blob, b.passphrase, "alice"));
        const shapes = {
          not_json: await refuse("{"),
          array: await refuse("[]"),
          v_true: await refuse(variant({ v: true })),
          extra: await refuse(variant({ x: 1 })),
          iterations_string: await refuse(variant({ iterations: "600000" })),
          iterations_fraction: await refuse(variant({ iterations: 600000.5 })),
          short_salt: await refuse(variant({ salt: "AAAA" })),
          padded_nonce: await refuse(variant({ nonce: parsed.nonce + "=" })),
          weak_when_sealing: await codeOf(
            () => e2ee.encryptBackup(ring, b.passphrase, "alice", { iterations: 599999 })),
          // 11 code points, but 7 once NFC-normalised: too short.
          short_passphrase: await codeOf(
            () => e2ee.encryptBackup(ring, "e\u0301e\u0301e\u0301e\u0301abc", "alice")),
        };
        return {
          keyring_plaintext_hex: hex(ring.export()),
          keyring: ring.toJson(),
          secret_hex: hex(secret),
          derived_key_hex: hex(derived),
          aad_hex: hex(e2ee.backupAad(b.username)),
          ct: JSON.parse(blob).ct,
          blob,
          restored: restored.toJson(),
          restored_identity: enc.b64e(restored.identityKey),
          open_ms: openMs,
          refusals,
          shapes,
        };
        """,
        BACKUP,
    )
    assert got["keyring_plaintext_hex"] == BACKUP["keyring_plaintext_hex"]
    assert got["keyring"] == BACKUP["keyring"]
    assert got["secret_hex"] == BACKUP["secret_hex"]
    assert got["derived_key_hex"] == BACKUP["derived_key_hex"]
    assert got["aad_hex"] == BACKUP["aad_hex"]
    assert b64d(got["ct"]).hex() == BACKUP["ct_hex"]
    assert got["blob"] == BACKUP["blob"]
    assert got["restored"] == BACKUP["keyring"]
    assert got["restored_identity"] == USERS["alice"]["identity_key"]
    assert got["open_ms"] < 10_000
    assert got["refusals"] == {r["name"]: r["error"] for r in BACKUP["refusals"]}
    assert got["shapes"] == {
        "not_json": "malformed",
        "array": "malformed",
        "v_true": "unsupported_version",
        "extra": "malformed",
        "iterations_string": "malformed",
        "iterations_fraction": "malformed",
        "short_salt": "malformed",
        "padded_nonce": "malformed",
        "weak_when_sealing": "weak_kdf",
        "short_passphrase": "weak_passphrase",
    }
    await problems.assert_clean()


async def test_backups_cross_between_browser_and_python(
    crypto_page: tuple[Page, PageWatch],
) -> None:
    """A keyring generated in the browser (non-extractable keys, raw values exported once)
    is backed up under a recovery key and restored by Python; a backup Python made under a
    passphrase is restored by the browser, which then opens a message for its device."""
    page, problems = crypto_page
    passphrase = "Crème brûlée, s'il vous plaît 🍮"
    python_ring = vector_keyring("alice")
    python_blob = encrypt_backup(python_ring, passphrase, "alice")
    first = await run(
        page,
        """
        const ring = await e2ee.Keyring.generate();
        const laptop = await ring.addDevice();
        const phone = await ring.addDevice("browser-phone-1");
        // Ids a plain JavaScript object would mishandle (reordered, or taken as the prototype).
        for (const id of ["100000000", "99999999", "__proto__"]) await ring.addDevice(id);
        const recovery = e2ee.newRecoveryKey();
        const blob = await e2ee.encryptBackup(ring, recovery, "dave");
        const restored = await e2ee.decryptBackup(blob, recovery.toLowerCase(), "dave");
        const exported = await Promise.all([ring.identity, laptop.x25519, laptop.ed25519,
          phone.x25519].map((k) => crypto.subtle.exportKey("pkcs8", k).then(() => "exported",
          (e) => e.name)));
        const fromPython = await e2ee.decryptBackup(arg.blob, arg.passphrase, "alice");
        return {
          blob, recovery,
          // As JSON text: Playwright's own serialisation would drop a "__proto__" key.
          keyring: JSON.stringify(ring.toJson()), restored: JSON.stringify(restored.toJson()),
          plaintext: hex(ring.export()),
          stringified: JSON.parse(JSON.stringify({ ring })),
          identity: enc.b64e(ring.identityKey),
          laptop: laptop.deviceId,
          put_body: await ring.publishedDevice("dave", laptop.deviceId),
          extractable: [ring.identity, laptop.x25519, laptop.ed25519, phone.x25519,
            phone.ed25519].map((k) => k.extractable),
          exported,
          from_python: JSON.stringify(fromPython.toJson()),
          wrong_user: await codeOf(() => e2ee.decryptBackup(blob, recovery, "erin")),
          merged: await restored.addDevice("another-browser").then(() => ring.merge(restored)),
          merge_other_identity: await codeOf(async () => ring.merge(await e2ee.Keyring.generate())),
        };
        """,
        {"blob": python_blob, "passphrase": unicodedata.normalize("NFD", passphrase)},
    )
    for field in ("keyring", "restored", "from_python"):
        first[field] = json.loads(first[field])
    assert first["extractable"] == [False] * 5
    assert first["exported"] == ["InvalidAccessError"] * 4
    assert first["restored"] == first["keyring"]
    assert {"100000000", "99999999", "__proto__", "browser-phone-1"} < set(
        first["keyring"]["devices"]
    )
    # JSON.stringify of a keyring shows public values only.
    assert first["stringified"] == {
        "ring": {
            "identityKey": first["identity"],
            "devices": list(first["stringified"]["ring"]["devices"]),
        }
    }
    assert len(first["stringified"]["ring"]["devices"]) == 5
    assert first["wrong_user"] == "decrypt_failed"
    assert first["merged"] == ["another-browser"]
    assert first["merge_other_identity"] == "identity_mismatch"
    assert first["from_python"] == python_ring.to_json()
    restored = decrypt_backup(first["blob"], first["recovery"], "dave")
    assert restored.to_json() == first["keyring"]
    assert restored.export().hex() == first["plaintext"]
    assert b64e(restored.identity_key) == first["identity"]
    assert restored.published_device("dave", first["laptop"]) == first["put_body"]
    blob = json.loads(first["blob"])
    assert list(blob) == ["v", "kdf", "iterations", "salt", "nonce", "ct"]
    assert (blob["v"], blob["kdf"], blob["iterations"]) == (1, "pbkdf2-sha256", 600_000)
    with pytest.raises(E2EEError, check=lambda e: e.code == "decrypt_failed"):
        decrypt_backup(first["blob"], "not the recovery key", "dave")

    # Python seals to the browser's generated device; the browser restores its keyring from
    # a backup Python re-encrypted, and opens the message with the restored keys.
    dave = restored.directory("dave")
    envelope = seal(
        e2ee.encode_payload({"type": "text", "text": "to the browser's device"}),
        conv="group:team-1",
        sender="dave",
        sender_device_keys=restored.device("browser-phone-1"),
        client_id="g-1",
        recipients=dave.recipients(exclude="browser-phone-1"),
    )
    reblob = encrypt_backup(restored, first["recovery"], "dave")
    second = await run(
        page,
        """
        const ring = await e2ee.Keyring.fromJson(
          (await e2ee.decryptBackup(arg.blob, arg.recovery, "dave")).toJson());
        const dir = ring.directory("dave");
        const opened = await e2ee.openEnvelope(arg.envelope, {
          expectedConv: "group:team-1", meUser: "dave", myDevice: ring.device(arg.laptop),
          senderKeys: await dir,
        });
        return opened.payload;
        """,
        {
            "blob": reblob,
            "recovery": first["recovery"],
            "envelope": envelope,
            "laptop": first["laptop"],
        },
    )
    assert second == {"type": "text", "text": "to the browser's device"}
    await problems.assert_clean()


# --- IndexedDB -----------------------------------------------------------------------------------


async def test_keys_and_pins_survive_a_reload_non_extractable(
    shared_server: LiveServer, crypto_page: tuple[Page, PageWatch]
) -> None:
    page, problems = crypto_page
    case = next(c for c in VECTORS["envelopes"] if c["name"] == "multi_device")
    saved = await run(
        page,
        """
        const ring = await vectorKeyring(arg.users.bob);
        await keystore.saveKeys("bob", ring, "bob-phone-01");
        const alice = enc.b64d(arg.users.alice.identity_key);
        const first = await keystore.checkPin("bob", "alice", alice);
        const again = await keystore.checkPin("bob", "alice", alice);
        const changed = await keystore.checkPin("bob", "alice", new Uint8Array(32).fill(7));
        await keystore.setVerified("bob", "alice", true);
        await keystore.pinIdentity("bob", "carol", enc.b64d(arg.users.carol.identity_key));
        await keystore.pinIdentity("carol", "alice", alice);
        return [first.status, again.status, changed.status, changed.pin.identityKey];
        """,
        {"users": USERS},
    )
    assert saved == ["new", "same", "changed", USERS["alice"]["identity_key"]]

    await page.goto(shared_server.url + "/login")
    got = await run(
        page,
        """
        const { envelope, users } = arg;
        const stored = await keystore.loadKeys("bob");
        const ring = stored.keyring;
        const me = ring.device(stored.deviceId);
        const opened = await e2ee.openEnvelope(envelope.envelope, {
          expectedConv: envelope.conv, meUser: "bob", myDevice: me,
          senderKeys: e2ee.parseDirectory(envelope.sender_keys),
          trustedIdentity: await keystore.trustedIdentity("bob", "alice"),
        });
        const cert = await ring.certify("bob", "bob-phone-01");
        const privateKeys = [ring.identity, ...[...ring.devices.values()].flatMap(
          (d) => [d.x25519, d.ed25519])];
        return {
          device: stored.deviceId,
          devices: [...ring.devices.keys()],
          identity: enc.b64e(ring.identityKey),
          payload: opened.payload,
          signature: hex(cert.signature),
          extractable: privateKeys.map((k) => k.extractable),
          types: privateKeys.map((k) => `${k.type}/${k.algorithm.name}`),
          export: await codeOf(async () => ring.export()),
          exportable: ring.exportable,
          pins: (await keystore.listPins("bob")).map((p) => [p.buddy, p.identityKey, p.verified]),
          missing: await keystore.loadKeys("nobody"),
          no_pin: await keystore.trustedIdentity("bob", "nobody"),
          deleted: await keystore.deleteKeys("bob").then(() => keystore.loadKeys("bob")),
        };
        """,
        {"envelope": case, "users": USERS},
    )
    bob = USERS["bob"]
    assert got["device"] == "bob-phone-01"
    assert got["devices"] == [d["device_id"] for d in bob["devices"]]
    assert got["identity"] == bob["identity_key"]
    assert got["payload"] == case["payload"]
    assert got["signature"] == bob["devices"][0]["signature_hex"]
    assert got["extractable"] == [False] * (1 + 2 * len(bob["devices"]))
    assert got["types"] == ["private/Ed25519"] + ["private/X25519", "private/Ed25519"] * len(
        bob["devices"]
    )
    assert got["export"] == "not_exportable" and got["exportable"] is False
    assert got["pins"] == [
        ["alice", USERS["alice"]["identity_key"], True],
        ["carol", USERS["carol"]["identity_key"], False],
    ]
    assert got["missing"] is None and got["no_pin"] is None and got["deleted"] is None
    await problems.assert_clean()
