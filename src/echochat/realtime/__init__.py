"""The /ws gateway: frame schemas, the hub of local connections, op dispatch."""
