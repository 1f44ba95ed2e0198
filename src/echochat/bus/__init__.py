"""Fan-out and shared state between processes; see :mod:`echochat.bus.base`."""

from echochat.bus.base import Bus, BusOverflow, BusUnavailable, CappedAdd, Subscription

__all__ = ["Bus", "BusOverflow", "BusUnavailable", "CappedAdd", "Subscription"]
