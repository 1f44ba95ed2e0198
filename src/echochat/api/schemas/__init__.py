"""Request and response bodies of the HTTP API (names: ThingIn / ThingOut / ThingPublic)."""
