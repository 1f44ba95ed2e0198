"""Adapters to the outside world: email, rate-limit storage, GIF providers, blob storage."""
