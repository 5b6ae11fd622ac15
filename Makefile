# Entry points for working on timestamp-api without Nix. Each target says what it needs.

# compose's .env, if there is one, also sets what the scripts read (REDIS_KEY_PREFIX, SECRETS_DIR).
-include .env
export

.PHONY: up test test-matrix contract lint deny sbom signing openapi generate bench profile instructions secrets e2e

# Service on 127.0.0.1:8080 (admin on 127.0.0.1:9090) with a private redis-server; Ctrl-C, or a
# SIGTERM or SIGHUP to scripts/up alone, stops both (.ci/check-up). Needs cargo; installs
# redis-server if it is missing (scripts/ensure-tools).
up:
	scripts/ensure-tools redis-server
	scripts/up

# The integration test modules that only use the API and what it stored: the cluster pass runs
# them again, unchanged, each against a Redis Cluster of its own (tests/api/harness/app.rs).
CLUSTER_PASS = contract:: errors:: listing:: timestamps::

# Unit and integration tests (the integration tests start their own redis-servers, and Redis
# Clusters with redis-cli), then the cluster pass. Needs cargo; installs redis-server (which
# brings redis-cli) if it is missing.
test:
	scripts/ensure-tools redis-server
	cargo test --locked
	TSAPI_TEST_REDIS=cluster cargo test --locked --test api -- $(CLUSTER_PASS)

# The integration tests (and the cluster pass) again, once against Redis 8.0 and once against
# Valkey 8.1: Debian 13's packages, downloaded once into ~/.cache/timestamp-api/redis-matrix and
# run from there (scripts/redis-matrix; docs/architecture.md, "Supported Redis servers"). Needs
# cargo, apt-get and, the first time, the Debian archive.
test-matrix:
	scripts/redis-matrix cargo test --locked --test api
	scripts/redis-matrix env TSAPI_TEST_REDIS=cluster cargo test --locked --test api -- $(CLUSTER_PASS)

# The served OpenAPI contract, tested by Schemathesis: the service on free ports with a private
# redis-server, `st run …/openapi.json --checks all`, bounded in examples and time; any finding
# fails (tests/contract/run). Needs st (PyPI schemathesis; .ci/run installs the pinned version)
# and cargo; installs redis-server and curl if they are missing.
contract:
	scripts/ensure-tools redis-server curl
	tests/contract/run

# Every linter CI runs (.ci/lint): rustfmt, clippy, shellcheck, yamllint, actionlint, promtool.
lint:
	.ci/lint

# The dependency policy (deny.toml: licences, bans, sources) with cargo-deny, offline, and a probe
# crate under a refused licence that it must refuse (.ci/check-deny). Advisories: nix flake check.
deny:
	.ci/check-deny

# SBOMs in target/sbom/ (the crate by cargo cyclonedx, both images read from the images), checked
# against the CycloneDX 1.5 schema, and the binary's embedded dependency list (cargo auditable)
# against Cargo.lock (tests/supply-chain/sbom). Needs docker, cargo-cyclonedx and
# cyclonedx-python-lib (.ci/run installs them), and what scripts/images needs.
sbom:
	tests/supply-chain/sbom

# Both images pushed to a registry on 127.0.0.1, signed with a key made for the run, and pulled
# under a signature policy: signed by that key allowed, unsigned or signed by another key refused
# (tests/supply-chain/signing). Needs docker; installs skopeo and docker-registry if missing.
signing:
	tests/supply-chain/signing

# Regenerate docs/openapi.json from the code (a test fails while it is stale).
openapi:
	cargo run --locked --quiet -- openapi > docs/openapi.json

# Regenerate every copy of a fact the code owns (tests fail while one is stale): the OpenAPI
# document, and from the configuration's doc comments the key table of docs/configuration.md
# and nix/config-keys.json, which the NixOS module makes its options from, and from the
# metric catalogue the metrics table of docs/operations.md.
generate: openapi
	TSAPI_REGENERATE=1 cargo test --locked --quiet --lib -- generated_copies_are_current the_metrics_table_in_operations_md_is_current

# Throughput, latency and CPU per request against raw Redis and a floor server; prints a
# table (docs/performance.md). Needs wrk.
bench:
	bench/run

# Where the CPU goes per case: perf samples and an inferno flame graph each, in
# target/profile/ (docs/performance.md). Needs perf (linux-perf), wrk and inferno.
profile:
	bench/profile

# The CI guard: instructions per request under callgrind for GET and PUT, against
# bench/instructions.baseline (10 % tolerance). Needs valgrind; installs it and redis-server if
# they are missing.
instructions:
	scripts/ensure-tools redis-server valgrind
	bench/instructions

# The deployment's secrets (random passwords, ACL with hashes) in ./secrets for compose.yaml,
# with copies for the Kubernetes dev overlay.
secrets:
	scripts/secrets $(or $(SECRETS_DIR),secrets) deploy/k8s/overlays/dev/secrets

# The compose deployment end to end (docker, compose v2); always cleans up after itself.
e2e:
	tests/e2e/run
