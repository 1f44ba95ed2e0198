"""What a service needs from the outside world, wired once by ``app.py`` or the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from echochat.bus import Bus
from echochat.config import Settings
from echochat.store import Database

__all__ = ["Context"]


@dataclass
class Context:
    settings: Settings
    db: Database
    bus: Bus
