"""Password hashing with argon2id (OWASP parameters), off the event loop."""

from __future__ import annotations

import asyncio

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["PasswordHasher"]

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
OWASP = {"time_cost": 2, "memory_cost": 19 * 1024, "parallelism": 1}


class PasswordHasher:
    def __init__(self, *, time_cost: int = 2, memory_cost: int = 19 * 1024, parallelism: int = 1):
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Check ``password``; with no stored hash, spend the same time and fail, so the
        answer's timing does not reveal whether the account exists."""
        if stored is None:
            if self._dummy is None:
                self._dummy = await self.hash("dummy password for timing")
            stored = self._dummy
            await asyncio.to_thread(self._check, stored, password)
            return False
        return await asyncio.to_thread(self._check, stored, password)

    def _check(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
