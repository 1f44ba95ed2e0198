"""The one exception of the E2EE SDK: every refusal carries a stable ``code``."""

from __future__ import annotations

__all__ = ["E2EEError"]


class E2EEError(Exception):
    """Something could not be sealed, opened or restored. ``code`` is stable and meant for
    programs (``unsupported_version``, ``wrong_conversation``, ``wrong_sender``,
    ``identity_changed``, ``unknown_sender_device``, ``bad_device_signature``,
    ``bad_signature``, ``not_a_recipient``, ``wrap_failed``, ``decrypt_failed``,
    ``bad_payload``, ``malformed``, ``weak_kdf``, ``unsupported_kdf``, ...); ``message``
    is meant for people and never contains key material."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"E2EEError(code={self.code!r}, message={self.message!r})"
