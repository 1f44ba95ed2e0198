"""Domain logic, one verb per function: check permission, write in one transaction, emit
events after commit. The only layer that changes state or emits events."""

from echochat.services.context import Context

__all__ = ["Context"]
