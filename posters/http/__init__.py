"""The HTTP layer: URLs and the allowlist, checked connections, framing, the pool, bodies,
proxies."""
