"""Safety numbers: the fingerprint of two users' identity keys, compared out of band to
defeat a server that presents a false identity (docs/e2ee.md, section 7)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from hashlib import sha256

from echochat.client.e2ee.encoding import check_username, key_bytes
from echochat.domain.e2ee import VERSION, lp

__all__ = ["SafetyNumber", "safety_number"]


@dataclass(frozen=True)
class SafetyNumber:
    """The fingerprint of two users' identity keys, the same on both sides."""

    digest: bytes

    @property
    def digits(self) -> str:
        """60 decimal digits: the digest as a big-endian integer modulo 10**60."""
        return str(int.from_bytes(self.digest, "big") % 10**60).zfill(60)

    @property
    def groups(self) -> tuple[str, ...]:
        """12 groups of 5 digits, as shown."""
        digits = self.digits
        return tuple(digits[i : i + 5] for i in range(0, 60, 5))

    @property
    def qr_payload(self) -> str:
        """What the QR code encodes: ``echochat-safety:1:<hex digest>``."""
        return f"echochat-safety:{VERSION}:{self.digest.hex()}"

    def matches_qr(self, payload: str) -> bool:
        return secrets.compare_digest(payload.strip().lower(), self.qr_payload)

    def __str__(self) -> str:
        return " ".join(self.groups)


def safety_number(
    user_a: str, identity_a: str | bytes, user_b: str, identity_b: str | bytes
) -> SafetyNumber:
    """SHA-256 of lp("echochat/v1/safety", first user, first key, second user, second key),
    the pair ordered by username, so both users compute the same number."""
    pair = sorted(
        [
            (check_username(user_a), key_bytes(identity_a, "identity key")),
            (check_username(user_b), key_bytes(identity_b, "identity key")),
        ]
    )
    (first, first_key), (second, second_key) = pair
    return SafetyNumber(
        sha256(lp("echochat/v1/safety", first, first_key, second, second_key)).digest()
    )
