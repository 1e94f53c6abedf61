"""How requests are spent: retries, the circuit breaker, rate limits, requests in flight."""
