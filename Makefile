# Entry points for working on timestamp-api without Nix. Each target says what it needs.
.PHONY: up test

# Service on 127.0.0.1:8080 with a private redis-server; Ctrl-C stops both. Needs cargo, redis-server.
up:
	scripts/up

# Unit and integration tests (the integration tests start their own redis-servers).
test:
	cargo test --locked
