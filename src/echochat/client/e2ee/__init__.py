"""End-to-end encryption, suite v1, for SDK users (the specification is ``docs/e2ee.md``).

Everything cryptographic is done by ``cryptography``: HPKE (RFC 9180) from
:mod:`cryptography.hazmat.primitives.hpke`, AES-256-GCM, Ed25519, X25519 and PBKDF2. This
package only fixes *what* is encrypted, bound and signed, and checks it on the way in. The
byte encodings and the envelope shape it shares with the server and the browser (``lp``,
base64url, :func:`~echochat.domain.e2ee.parse_envelope`) live in :mod:`echochat.domain.e2ee`.

Sending a direct message::

    keyring = Keyring.generate()
    me = keyring.add_device()
    await publish_device(chat, keyring, me.device_id)
    peer = await fetch_keys(chat, "bob")            # verified: bad devices are dropped
    own = await fetch_keys(chat, "alice")
    envelope = seal_dm("hello", sender="alice", sender_device_keys=me, peer=peer, own=own,
                       client_id="m-1")

Receiving one: fetch (and pin) the claimed sender's keys, then
``open_envelope(envelope, expected_conv=..., me_user=..., my_device_keys=...,
sender_keys=directory)``. Every refusal is an :class:`E2EEError` with a stable ``code``.

Private keys never leave a :class:`Keyring` except inside the encrypted key backup
(:func:`encrypt_backup`), and ``repr()`` never shows them.

Where things are: ``suite`` (sizes, limits, the bound byte strings), ``encoding`` (values
checked on the way in), ``keys`` (:class:`DeviceKeys`, :class:`Keyring`), ``directory``
(:func:`verify_directory`, :func:`recipients_for`), ``envelope`` (:func:`seal`,
:func:`open_envelope`), ``safety`` (safety numbers), ``backup`` (the key backup and
recovery keys), ``remote`` (the HTTP helpers), ``errors`` (:class:`E2EEError`). Sizes and
limits not exported here (``KEY_SIZE``, ``CROCKFORD``, ...) are in ``suite`` and ``backup``.
"""

from echochat.client.e2ee.backup import (
    backup_aad,
    backup_secret,
    decrypt_backup,
    encrypt_backup,
    format_recovery_key,
    new_recovery_key,
    parse_recovery_key,
)
from echochat.client.e2ee.directory import (
    KeyDirectory,
    PublicDevice,
    Recipient,
    RejectedDevice,
    recipients_for,
    verify_directory,
)
from echochat.client.e2ee.encoding import dm_conversation, encode_payload
from echochat.client.e2ee.envelope import Opened, open_envelope, seal, seal_dm
from echochat.client.e2ee.errors import E2EEError
from echochat.client.e2ee.keys import DeviceKeys, Keyring
from echochat.client.e2ee.remote import (
    RestoredBackup,
    fetch_keys,
    load_backup,
    publish_device,
    remove_device,
    save_backup,
)
from echochat.client.e2ee.safety import SafetyNumber, safety_number
from echochat.client.e2ee.suite import (
    BACKUP_KDF,
    MAX_ENVELOPE_BYTES,
    MAX_PLAINTEXT,
    MAX_RECIPIENTS,
    MIN_ITERATIONS,
    SUITE,
    body_aad,
    signature_input,
    wrap_info,
)
from echochat.domain.e2ee import MAX_DEVICES

__all__ = [
    "BACKUP_KDF",
    "MAX_DEVICES",
    "MAX_ENVELOPE_BYTES",
    "MAX_PLAINTEXT",
    "MAX_RECIPIENTS",
    "MIN_ITERATIONS",
    "SUITE",
    "DeviceKeys",
    "E2EEError",
    "KeyDirectory",
    "Keyring",
    "Opened",
    "PublicDevice",
    "Recipient",
    "RejectedDevice",
    "RestoredBackup",
    "SafetyNumber",
    "backup_aad",
    "backup_secret",
    "body_aad",
    "decrypt_backup",
    "dm_conversation",
    "encode_payload",
    "encrypt_backup",
    "fetch_keys",
    "format_recovery_key",
    "load_backup",
    "new_recovery_key",
    "open_envelope",
    "parse_recovery_key",
    "publish_device",
    "recipients_for",
    "remove_device",
    "safety_number",
    "save_backup",
    "seal",
    "seal_dm",
    "signature_input",
    "verify_directory",
    "wrap_info",
]
