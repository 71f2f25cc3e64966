"""Events: the v1 JSON schema, the bus that numbers them, and the durable store."""
