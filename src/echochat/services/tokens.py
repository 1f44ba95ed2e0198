"""Tokens: access JWTs, CSRF tokens bound to the session, and opaque secrets stored hashed.

Where the policy lives: claims and their checks are in :class:`TokenKeys`; the lifetime comes
from settings. Keys for each purpose are derived from the server secret with HKDF, so a
token of one kind can never be passed off as another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from echochat.domain.errors import Forbidden, Unauthorized

__all__ = [
    "AccessClaims",
    "TokenKeys",
    "hash_secret",
    "new_secret",
]

ALGORITHM = "HS256"
AUDIENCE = "echochat"
ANON = "anon"


def new_secret(nbytes: int = 32) -> str:
    """A random URL-safe secret (``nbytes`` of entropy; 32 bytes = 256 bits)."""
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a high-entropy secret (enough for random tokens; never for passwords)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _derive(secret: str, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"echochat-v1", info=label).derive(
        secret.encode()
    )


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    session_id: str
    expires_at: float


class TokenKeys:
    def __init__(self, secret: str, *, issuer: str, access_ttl: int) -> None:
        self._access_key = _derive(secret, b"access-token")
        self._csrf_key = _derive(secret, b"csrf-token")
        self._pin_key = _derive(secret, b"reset-pin")
        self.issuer = issuer
        self.access_ttl = access_ttl

    # access tokens -------------------------------------------------------------------------
    def issue_access(self, user_id: int, session_id: str, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": str(user_id),
            "sid": session_id,
            "typ": "access",
            "iat": issued,
            "exp": issued + self.access_ttl,
        }
        return jwt.encode(claims, self._access_key, algorithm=ALGORITHM)

    def verify_access(self, token: str, *, allow_expired: bool = False) -> AccessClaims:
        """Check algorithm (allowlist), signature, ``exp``, ``iss``, ``aud`` and ``typ``."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._access_key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self.issuer,
                options={
                    "require": ["exp", "iat", "iss", "aud", "sub", "sid", "typ"],
                    "verify_exp": not allow_expired,
                },
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("access token expired; refresh it", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("access token is not valid", code="token_invalid") from exc
        if claims.get("typ") != "access" or not str(claims.get("sub", "")).isdigit():
            raise Unauthorized("access token is not valid", code="token_invalid")
        return AccessClaims(int(claims["sub"]), str(claims["sid"]), float(claims["exp"]))

    # CSRF: double submit, bound to the session by HMAC --------------------------------------
    def issue_csrf(self, session_id: str | None) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._csrf_mac(session_id, nonce)}"

    def check_csrf(self, cookie: str | None, header: str | None, session_id: str | None) -> None:
        if not header or not cookie:
            raise Forbidden(
                "missing CSRF token: send the echochat_csrf cookie's value in X-CSRF-Token",
                code="csrf_missing",
            )
        if not hmac.compare_digest(cookie.encode(), header.encode()):
            raise Forbidden("CSRF token does not match its cookie", code="csrf_invalid")
        nonce, _, mac = header.partition(".")
        expected = self._csrf_mac(session_id, nonce).encode()
        if not nonce or not hmac.compare_digest(mac.encode(), expected):
            raise Forbidden(
                "CSRF token is not valid for this session; fetch a new one from "
                "GET /api/v1/auth/csrf",
                code="csrf_invalid",
            )

    def _csrf_mac(self, session_id: str | None, nonce: str) -> str:
        message = f"{session_id or ANON}|{nonce}".encode()
        digest = hmac.new(self._csrf_key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    # reset PINs: low entropy, so keyed (a stolen database alone cannot brute-force them) ----
    def pin_hash(self, reset_id: str, pin: str) -> str:
        return hmac.new(self._pin_key, f"{reset_id}|{pin}".encode(), hashlib.sha256).hexdigest()
