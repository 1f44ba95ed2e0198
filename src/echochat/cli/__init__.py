"""The ``echochat`` command."""
