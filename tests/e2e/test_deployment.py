#!/usr/bin/env python3
"""End-to-end tests of the compose deployment (compose.yaml), over 127.0.0.1 only.

Run by tests/e2e/run (`make e2e`), which starts the stack and always tears it down. Each test
is an assertion about a property of the deployment that fails when the property breaks: the
API contract through the published port, what is (not) published, persistence across restarts
and crashes, behaviour with Redis down, graceful shutdown under load, the Redis ACL, the
containers' hardening, the cursor key from its secret file, and a backup-and-restore rehearsal. Tests run in the order written;
each leaves the stack healthy for the next.

Environment (set by tests/e2e/run): COMPOSE_PROJECT_NAME, API_PORT, SECRETS_DIR, API_IMAGE,
REDIS_IMAGE, API_DRAIN_DELAY, and those of the profiles (REDIS_HA_NETWORK, API_HA_PORT,
REDIS_CLUSTER_NETWORK, API_CLUSTER_PORT); E2E_ONLY selects tests by part of their name.
"""

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from urllib.parse import quote

API_PORT = int(os.environ["API_PORT"])
API_HA_PORT = int(os.environ.get("API_HA_PORT", "8081"))
SECRETS = Path(os.environ["SECRETS_DIR"])
PROJECT = os.environ["COMPOSE_PROJECT_NAME"]
APP_USER = "timestamp-api"


def read_secret(name):
    return (SECRETS / name).read_text().strip()


def secret_line(name, prefix):
    """The last word of the first line of secret file `name` that starts with `prefix`."""
    return next(line for line in (SECRETS / name).read_text().split("\n") if line.startswith(prefix)).split()[-1]


def run(*args, check=True, env=None, timeout=120):
    result = subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def compose(*args, check=True, timeout=180):
    return run("docker", "compose", *args, check=check, timeout=timeout)


def container(service, profile=None):
    """The id of `service`'s container (one of `profile`'s services, if given)."""
    profiles = ["--profile", profile] if profile else []
    container_id = compose(*profiles, "ps", "--all", "--quiet", service).stdout.strip()
    assert container_id, f"no container for {service}"
    return container_id


def inspect(service):
    return json.loads(run("docker", "inspect", container(service)).stdout)[0]


def request(method, path, body=None, headers=None, timeout=5, port=API_PORT):
    """One request on a fresh connection: (status, headers, parsed JSON or None, seconds)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        elapsed = time.monotonic() - started
        parsed = json.loads(raw) if raw and "json" in (response.getheader("content-type") or "") else None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed, elapsed
    finally:
        connection.close()


def put_json(path, document, port=API_PORT):
    return request("PUT", path, json.dumps(document), {"Content-Type": "application/json"}, port=port)


def redis_cli(user, password, *args):
    """redis-cli inside the Redis container (Redis has no host port); password via env, not argv."""
    command = ["exec", "-T"]
    if password is not None:
        command += ["-e", f"REDISCLI_AUTH={password}"]
    command += ["redis", "/bin/redis-cli", "--no-auth-warning"]
    if user is not None:
        command += ["--user", user]
    return compose(*command, *args, check=False).stdout.strip()


def wait_for(description, condition, within=60):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, http.client.HTTPException, AssertionError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{description}: not within {within}s")


def wait_until_serving(within=60):
    wait_for("the API serves", lambda: request("GET", "/v1/timestamps?limit=1")[0] == 200, within)


def assert_problem(result, status, slug):
    code, headers, body, _ = result
    assert code == status, f"expected {status}, got {code}: {body}"
    assert headers["content-type"] == "application/problem+json", headers
    assert body["status"] == status and body["type"].endswith("#" + slug), body


class Skip(Exception):
    """Raised by a test that cannot run here; the run reports it and does not fail."""


TESTS = []


def test(function):
    TESTS.append(function)
    return function


@test
def api_contract_through_the_published_port():
    status, headers, body, _ = request("PUT", "/v1/timestamps/e2e-deploy")
    assert status == 201 and headers["location"] == "/v1/timestamps/e2e-deploy", (status, headers)
    assert body["name"] == "e2e-deploy" and body["timestamp"].endswith("Z"), body

    status, _, body, _ = put_json("/v1/timestamps/e2e-deploy", {"timestamp": "2026-11-25T18:36:23.123+01:00"})
    assert status == 200 and body == {
        "name": "e2e-deploy",
        "timestamp": "2026-11-25T17:36:23.123Z",
        "epoch_ms": 1795628183123,
    }, (status, body)
    assert request("GET", "/v1/timestamps/e2e-deploy")[2]["epoch_ms"] == 1795628183123

    status, _, body, _ = request("GET", "/v1/timestamps?limit=1000")
    assert status == 200 and "e2e-deploy" in {item["name"] for item in body["items"]}, body

    status, _, _, _ = request("DELETE", "/v1/timestamps/e2e-deploy")
    assert status == 204
    assert_problem(request("GET", "/v1/timestamps/e2e-deploy"), 404, "not-found")
    assert_problem(request("GET", "/v1/timestamps/-bad-name"), 400, "invalid-name")
    assert_problem(put_json("/v1/timestamps/x", {"epoch_ms": -1}), 400, "out-of-range")
    method_not_allowed = request("POST", "/v1/timestamps/x")
    assert_problem(method_not_allowed, 405, "method-not-allowed")
    assert method_not_allowed[1]["allow"] == "GET, HEAD, PUT, DELETE"


@test
def only_the_api_port_is_published_and_only_on_loopback():
    api_ports = inspect("api")["NetworkSettings"]["Ports"]
    published = {port: bindings for port, bindings in api_ports.items() if bindings}
    assert list(published) == ["8080/tcp"], api_ports
    assert all(binding["HostIp"] == "127.0.0.1" for binding in published["8080/tcp"]), published
    assert not api_ports.get("9090/tcp"), "the admin port is published"
    assert not any(inspect("redis")["NetworkSettings"]["Ports"].values()), "Redis has a host port"
    admin = compose("port", "api", "9090", check=False)
    assert admin.returncode != 0 or admin.stdout.strip() in ("", ":0"), admin.stdout


@test
def redis_is_not_reachable_from_the_host():
    networks = inspect("redis")["NetworkSettings"]["Networks"]
    assert [name.removeprefix(PROJECT + "_") for name in networks] == ["backend"], networks
    network = run("docker", "network", "inspect", PROJECT + "_backend").stdout
    assert json.loads(network)[0]["Internal"] is True
    for settings in networks.values():
        reply = b""
        with socket.socket() as probe:
            probe.settimeout(2)
            try:
                probe.connect((settings["IPAddress"], 6379))
                probe.sendall(b"PING\r\n")
                reply = probe.recv(64)
            except OSError:
                pass
        # Any Redis reply (+PONG, -NOAUTH) means the host got through; silence or an error
        # does not (some networks accept every TCP connection at the edge).
        assert not reply.startswith((b"+", b"-")), f"the host reaches Redis at {settings['IPAddress']}: {reply!r}"


@test
def the_app_user_can_do_only_what_the_service_needs():
    password = read_secret("redis_password")
    assert redis_cli(APP_USER, password, "SET", "ts:e2e-acl", "1") == "OK"
    assert redis_cli(APP_USER, password, "GET", "ts:e2e-acl") == "1"
    for command in (["FLUSHALL"], ["CONFIG", "GET", "dir"], ["KEYS", "*"], ["GET", "other:key"], ["SET", "other:key", "1"]):
        reply = redis_cli(APP_USER, password, *command)
        assert reply.startswith("NOPERM"), f"{command}: {reply}"
    assert redis_cli(APP_USER, password, "DEL", "ts:e2e-acl") == "1"


@test
def the_default_user_and_wrong_passwords_are_refused():
    assert redis_cli(None, None, "PING").startswith("NOAUTH"), "the default user is not off"
    refused = compose(
        "exec", "-T", "-e", "REDISCLI_AUTH=not-the-password", "redis",
        "/bin/redis-cli", "--no-auth-warning", "--user", APP_USER, "PING", check=False,
    )
    assert "WRONGPASS" in refused.stdout + refused.stderr, refused


@test
def both_containers_run_as_non_root_with_a_read_only_root_filesystem():
    for service, user in (("api", "10001:10001"), ("redis", "999:999")):
        details = inspect(service)
        assert details["Config"]["User"] == user, (service, details["Config"]["User"])
        host = details["HostConfig"]
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"], (service, host["CapDrop"])
        assert "no-new-privileges:true" in host["SecurityOpt"], (service, host["SecurityOpt"])
        assert host["PidsLimit"] > 0 and host["Memory"] > 0 and host["NanoCpus"] > 0, service
        # docker top passes options to ps, which must keep its PID column.
        processes = run("docker", "top", container(service), "-eo", "pid,uid").stdout.split("\n")[1:]
        uids = [line.split()[1] for line in processes if line.strip()]
        assert uids and "0" not in uids, (service, uids)


@test
def secrets_are_files_only_and_the_acl_holds_hashes_only():
    password = read_secret("redis_password")
    admin_password = read_secret("redis_admin_password")
    cursor_key = read_secret("cursor_key")
    assert re.fullmatch(r"[0-9a-f]{64}", cursor_key), "cursor_key is not 32 random bytes in hex"
    secrets = (password, admin_password, cursor_key)
    acl = (SECRETS / "users.acl").read_text()
    assert password not in acl and admin_password not in acl
    assert acl.count(" #") == 2, acl
    for service in ("api", "redis"):
        details = inspect(service)
        environment = "\n".join(details["Config"]["Env"] or [])
        assert not any(secret in environment for secret in secrets), service
        image = json.loads(run("docker", "image", "inspect", details["Image"]).stdout)[0]
        assert not any(secret in json.dumps(image["Config"]) for secret in secrets), service
    assert "TSAPI_CURSOR_KEY_FILE=/run/secrets/cursor_key" in inspect("api")["Config"]["Env"]
    logs = compose("logs", "--no-color").stdout
    assert not any(secret in logs for secret in secrets)
    assert (SECRETS / "redis_password").stat().st_uid == 10001
    assert (SECRETS / "cursor_key").stat().st_uid == 10001
    assert (SECRETS / "users.acl").stat().st_uid == 999
    for name in ("redis_password", "cursor_key", "users.acl", "redis_admin_password"):
        assert (SECRETS / name).stat().st_mode & 0o077 == 0, f"{name} is readable by group or others"
    # Profile `ha`: the data nodes' ACL has hashes only; the two files that must hold passwords
    # in clear (Redis and Sentinel need them so) are Redis's alone.
    replication = secret_line("replication.conf", "masterauth")
    sentinel = secret_line("sentinel.conf", "sentinel auth-pass")
    ha_acl = (SECRETS / "users-ha.acl").read_text()
    assert not any(secret in ha_acl for secret in (password, admin_password, replication, sentinel))
    assert ha_acl.count(" #") == 4, ha_acl
    sentinel_acl = (SECRETS / "sentinel-users.acl").read_text()
    assert not any(secret in sentinel_acl for secret in (password, admin_password, sentinel))
    assert sentinel_acl.count(" #") == 3, sentinel_acl
    for name in ("users-ha.acl", "replication.conf", "sentinel-users.acl", "sentinel.conf"):
        assert (SECRETS / name).stat().st_uid == 999, name
        assert (SECRETS / name).stat().st_mode & 0o077 == 0, f"{name} is readable by group or others"
    # Profile `ha`'s TLS: each private key is its container user's alone, the CA's stays with
    # whoever ran `make secrets`, and neither is in an image or a container's environment.
    for pair, uid in (("redis", 999), ("api", 10001)):
        directory = SECRETS / "tls" / pair
        assert directory.stat().st_uid == uid and directory.stat().st_mode & 0o077 == 0, pair
        for name in ("tls.crt", "tls.key", "ca.crt"):
            assert (directory / name).stat().st_uid == uid, (pair, name)
            assert (directory / name).stat().st_mode & 0o077 == 0, f"tls/{pair}/{name} is readable by others"
    assert (SECRETS / "tls" / "ca.key").stat().st_mode & 0o077 == 0, "the CA key is readable by others"


@test
def a_cursor_stays_valid_across_an_api_restart():
    """The cursor key comes from the secret file, not from a key each process draws at start."""
    for name in ("e2e-cursor-a", "e2e-cursor-b"):
        assert put_json(f"/v1/timestamps/{name}", {"epoch_ms": 7777})[0] in (200, 201)
    status, _, body, _ = request("GET", "/v1/timestamps?limit=1")
    assert status == 200 and body["next_cursor"], (status, body)
    cursor = quote(body["next_cursor"], safe="")
    compose("restart", "api")
    compose("up", "--detach", "--wait")
    wait_until_serving()
    status, _, body, _ = request("GET", f"/v1/timestamps?limit=1&cursor={cursor}")
    assert status == 200, f"a cursor from before the restart: {status} {body}"
    assert_problem(request("GET", "/v1/timestamps?limit=1&cursor=" + quote("not-a-cursor", safe="")), 400, "invalid-query")
    for name in ("e2e-cursor-a", "e2e-cursor-b"):
        request("DELETE", f"/v1/timestamps/{name}")


@test
def values_survive_a_redis_restart():
    assert put_json("/v1/timestamps/e2e-restart", {"epoch_ms": 1111})[0] in (200, 201)
    compose("restart", "redis")
    compose("up", "--detach", "--wait")
    wait_until_serving()
    assert request("GET", "/v1/timestamps/e2e-restart")[2]["epoch_ms"] == 1111


@test
def values_survive_down_and_up_with_the_volume_kept():
    assert put_json("/v1/timestamps/e2e-down-up", {"epoch_ms": 2222})[0] in (200, 201)
    compose("down")
    compose("up", "--detach", "--wait")
    wait_until_serving()
    assert request("GET", "/v1/timestamps/e2e-down-up")[2]["epoch_ms"] == 2222


@test
def an_acknowledged_write_survives_sigkill_of_redis():
    status, _, body, _ = put_json("/v1/timestamps/e2e-kill", {"epoch_ms": 3333})
    assert status in (200, 201) and body["epoch_ms"] == 3333
    run("docker", "kill", "--signal", "KILL", container("redis"))
    compose("up", "--detach", "--wait")
    wait_until_serving()
    assert request("GET", "/v1/timestamps/e2e-kill")[2]["epoch_ms"] == 3333


@test
def with_redis_stopped_the_api_answers_503_fast_and_recovers():
    assert put_json("/v1/timestamps/e2e-fault", {"epoch_ms": 4444})[0] in (200, 201)
    compose("stop", "redis")
    for path in ("/v1/timestamps/e2e-fault", "/v1/timestamps?limit=5"):
        result = request("GET", path)
        assert_problem(result, 503, "unavailable")
        assert result[1]["retry-after"] == "1"
        assert result[3] < 1.0, f"{path} took {result[3]:.2f}s"
    probe = compose("exec", "-T", "api", "/bin/timestamp-api", "healthcheck", check=False)
    assert probe.returncode == 1 and "503" in probe.stderr, (probe.returncode, probe.stderr)
    api = inspect("api")
    assert api["State"]["Running"] and api["RestartCount"] == 0, api["State"]
    compose("start", "redis")
    wait_for("the API serves again", lambda: request("GET", "/v1/timestamps/e2e-fault")[0] == 200, 30)
    compose("up", "--detach", "--wait")


@test
def stopping_the_api_under_load_loses_no_request():
    outcomes, errors = [], []
    stop_issued = threading.Event()
    deadline = time.monotonic() + 3.0  # the load ends before the drain delay (3 s) does

    def load(worker):
        connection = http.client.HTTPConnection("127.0.0.1", API_PORT, timeout=10)
        sequence = 0
        while time.monotonic() < deadline:
            sequence += 1
            try:
                connection.request("PUT", f"/v1/timestamps/e2e-load-{worker}")
                response = connection.getresponse()
                response.read()
                outcomes.append((response.status, stop_issued.is_set()))
            except Exception as error:  # noqa: BLE001 - every failure is a lost request
                errors.append(f"worker {worker} request {sequence}: {error!r}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", API_PORT, timeout=10)
        connection.close()

    workers = [threading.Thread(target=load, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    stop_issued.set()
    stopping = subprocess.Popen(["docker", "compose", "stop", "api"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for worker in workers:
        worker.join()
    stopping.wait(timeout=60)

    assert not errors, errors[:5]
    assert outcomes and all(status in (200, 201) for status, _ in outcomes), {s for s, _ in outcomes}
    after_stop = sum(1 for _, stopped in outcomes if stopped)
    assert after_stop > 0, "no request was served after the stop was issued"
    state = inspect("api")["State"]
    assert state["ExitCode"] == 0, state
    logs = compose("logs", "--no-color", "api").stdout
    assert "shutdown signal received" in logs and "stopped; Redis connection closed" in logs
    print(f"    {len(outcomes)} requests, {after_stop} of them after SIGTERM, none lost")
    compose("up", "--detach", "--wait")
    wait_until_serving()


@test
def backup_and_restore_rehearsal():
    """docs/deployment.md "Backup and restore": the scripts operators run, end to end."""
    assert put_json("/v1/timestamps/e2e-backed-up", {"epoch_ms": 5555})[0] in (200, 201)
    with tempfile.TemporaryDirectory() as directory:
        backup = Path(directory) / "backup.rdb"
        run("scripts/redis-backup", str(backup))
        assert backup.stat().st_size > 0
        assert put_json("/v1/timestamps/e2e-after-backup", {"epoch_ms": 6666})[0] in (200, 201)
        run("scripts/redis-restore", str(backup), timeout=300)
    wait_until_serving()
    assert request("GET", "/v1/timestamps/e2e-backed-up")[2]["epoch_ms"] == 5555
    assert request("GET", "/v1/timestamps/e2e-after-backup")[0] == 404
    # The restored data is durable again: it survives SIGKILL through the new append-only file.
    run("docker", "kill", "--signal", "KILL", container("redis"))
    compose("up", "--detach", "--wait")
    wait_until_serving()
    assert request("GET", "/v1/timestamps/e2e-backed-up")[2]["epoch_ms"] == 5555


# --- Profile `ha` (compose.yaml; docs/deployment.md, "High availability") -----------------------

HA_NETWORK = os.environ.get("REDIS_HA_NETWORK", "10.203.117")
HA_NODES = {f"{HA_NETWORK}.11": "redis-primary", f"{HA_NETWORK}.12": "redis-replica"}
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
MASTER = os.environ.get("REDIS_SENTINEL_MASTER", "timestamp-redis")
DOWN_AFTER = int(os.environ.get("SENTINEL_DOWN_AFTER_MS", "5000")) / 1000
KEY_PREFIX = os.environ.get("REDIS_KEY_PREFIX", "ts:")


_ha_containers = {}


def ha(*args, check=True, timeout=180):
    _ha_containers.clear()
    return compose("--profile", "ha", *args, check=check, timeout=timeout)


def ha_container(service):
    if service not in _ha_containers:
        container_id = ha("ps", "--all", "--quiet", service).stdout.strip()
        assert container_id, f"no container for {service}"
        _ha_containers[service] = container_id
    return _ha_containers[service]


# Every HA container speaks only TLS and requires a client certificate (compose.yaml); its own
# pair, mounted at /etc/redis/tls, is one.
HA_TLS = ["--tls", "--cacert", "/etc/redis/tls/ca.crt", "--cert", "/etc/redis/tls/tls.crt",
          "--key", "/etc/redis/tls/tls.key"]


def ha_cli(service, user, password, *args, tls=HA_TLS):
    """redis-cli in an HA container (a Sentinel's port for sentinel-*), with `docker exec`:
    quicker than `compose exec` for the polling below. `tls` is how redis-cli speaks to it."""
    port = ["-p", "26379"] if service.startswith("sentinel") else []
    command = ["docker", "exec"]
    if password is not None:
        command += ["-e", f"REDISCLI_AUTH={password}"]
    command += [ha_container(service), "/bin/redis-cli", "--no-auth-warning", *port, *tls]
    if user is not None:
        command += ["--user", user]
    return run(*command, *args, check=False).stdout.strip()


def as_admin(service, *args):
    return ha_cli(service, "admin", read_secret("redis_admin_password"), *args)


def pairs(reply):
    """A reply of alternating fields and values, one per line (SENTINEL MASTER), as a dict."""
    lines = reply.split("\n")
    return dict(zip(lines[::2], lines[1::2]))


def info(reply):
    """An INFO section as a dict."""
    return dict(line.split(":", 1) for line in reply.replace("\r", "").split("\n") if ":" in line)


def primary_by(sentinel):
    return ha_cli(sentinel, "admin", read_secret("redis_admin_password"), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER).split("\n")[0]


def wait_for_topology(primary, within):
    """Every Sentinel names `primary`, knows the other two and the replica, and the replica is
    in sync with it."""
    replica = next(address for address in HA_NODES if address != primary)
    seen = {}  # the last state of each part, for the message when it does not settle

    def settled():
        for sentinel in SENTINELS:
            state = pairs(as_admin(sentinel, "SENTINEL", "MASTER", MASTER))
            seen[sentinel] = (state.get("ip"), state.get("flags"), state.get("num-other-sentinels"), state.get("num-slaves"))
            if seen[sentinel] != (primary, "master", "2", "1"):
                return False
            # A Sentinel refreshes a replica's role from its INFO every 10 s; one that still
            # believes the replica a primary sends it REPLICAOF, undoing a failover started
            # now. So settled also means every Sentinel has seen the replica's own word.
            # (One replica: redis-cli prints its nested fields flat, one per line.)
            known = pairs(as_admin(sentinel, "SENTINEL", "REPLICAS", MASTER))
            seen[sentinel] += (known.get("ip"), known.get("role-reported"))
            if seen[sentinel][4:] != (replica, "slave"):
                return False
        replication = info(as_admin(HA_NODES[replica], "INFO", "replication"))
        seen[replica] = (replication.get("role"), replication.get("master_host"), replication.get("master_link_status"))
        return seen[replica] == ("slave", primary, "up")

    try:
        wait_for(f"Sentinels agree on {primary}, replica {replica} in sync", settled, within)
    except AssertionError as error:
        logs = ha("logs", "--no-color", "--tail", "40", *SENTINELS, *HA_NODES.values(), check=False).stdout
        raise AssertionError(f"{error}; last seen (ip, flags, other Sentinels, replicas, replica, "
                             f"its reported role / role, "
                             f"primary, link): {seen}\n{logs}") from None



@test
def ha_sentinels_agree_replicate_and_fail_over_with_their_acls():
    ha("up", "--detach", "--wait", "redis-primary", "redis-replica", *SENTINELS)
    wait_for_topology(f"{HA_NETWORK}.11", within=30)
    for sentinel in SENTINELS:
        assert as_admin(sentinel, "SENTINEL", "CKQUORUM", MASTER).startswith("OK 3 usable Sentinels"), sentinel

    for service in (*HA_NODES.values(), *SENTINELS):
        details = json.loads(run("docker", "inspect", ha_container(service)).stdout)[0]
        host = details["HostConfig"]
        assert details["Config"]["User"] == "999:999", service
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert host["PidsLimit"] > 0 and host["Memory"] > 0 and host["NanoCpus"] > 0, service
        assert not any(details["NetworkSettings"]["Ports"].values()), f"{service} has a host port"
        networks = [name.removeprefix(PROJECT + "_") for name in details["NetworkSettings"]["Networks"]]
        assert networks == ["redis-ha"], (service, networks)
    assert json.loads(run("docker", "network", "inspect", PROJECT + "_redis-ha").stdout)[0]["Internal"] is True

    # Who may do what: clients of the Sentinels may ask, not steer; the Sentinels' and the
    # replicas' logins on the data nodes reach no key; nobody gets in without a password.
    password = read_secret("redis_password")
    assert ha_cli("sentinel-1", APP_USER, password, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER).startswith(HA_NETWORK)
    assert ha_cli("sentinel-1", APP_USER, password, "SENTINEL", "FAILOVER", MASTER).startswith("NOPERM")
    assert ha_cli("sentinel-1", None, None, "SENTINEL", "MASTERS").startswith("NOAUTH")
    assert ha_cli("redis-primary", None, None, "PING").startswith("NOAUTH")
    for user, password in (("sentinel", secret_line("sentinel.conf", "sentinel auth-pass")),
                           ("replication", secret_line("replication.conf", "masterauth"))):
        assert ha_cli("redis-primary", user, password, "PING") == "PONG", user
        for command in (["GET", "ts:x"], ["FLUSHALL"], ["CONFIG", "SET", "maxmemory", "1"]):
            assert ha_cli("redis-primary", user, password, *command).startswith("NOPERM"), (user, command)

    # A planned failover (docs/operations.md): the replica takes over, the old primary follows,
    # and neither data node refuses the Sentinels or the replica anything on the way.
    for node in HA_NODES.values():
        assert as_admin(node, "ACL", "LOG", "RESET") == "OK"
    assert as_admin("sentinel-1", "SENTINEL", "FAILOVER", MASTER) == "OK"
    wait_for_topology(f"{HA_NETWORK}.12", within=30)
    for node in HA_NODES.values():
        assert as_admin(node, "ACL", "LOG") == "", f"{node} refused a command: {as_admin(node, 'ACL', 'LOG')}"


@test
def ha_every_link_speaks_tls_and_the_api_reaches_redis_through_it():
    ha("up", "--detach", "--wait", "api-ha")
    password = read_secret("redis_admin_password")
    for service in (*HA_NODES.values(), *SENTINELS):
        # Plaintext gets no answer; TLS without a client certificate is refused; with one, PONG.
        assert "PONG" not in ha_cli(service, "admin", password, "PING", tls=[]), service
        no_certificate = ["--tls", "--cacert", "/etc/redis/tls/ca.crt"]
        assert "PONG" not in ha_cli(service, "admin", password, "PING", tls=no_certificate), service
        assert ha_cli(service, "admin", password, "PING") == "PONG", service
    # Replication runs over TLS too: the replica's link to the primary is up.
    replica = next(node for address, node in HA_NODES.items() if address != primary_by("sentinel-1"))
    assert info(as_admin(replica, "INFO", "replication")).get("master_link_status") == "up"

    status, _, body, _ = put_json("/v1/timestamps/e2e-tls", {"epoch_ms": 4242}, port=API_HA_PORT)
    assert status in (200, 201) and body["epoch_ms"] == 4242, (status, body)
    status, _, body, _ = request("GET", "/v1/timestamps/e2e-tls", port=API_HA_PORT)
    assert status == 200 and body["epoch_ms"] == 4242, (status, body)
    logs = ha("logs", "--no-color", "api-ha").stdout
    assert "connected to the Redis primary" in logs, logs
    assert "BEGIN" not in logs and "PRIVATE KEY" not in logs, "certificate or key material in the log"


def image_knows(*variables):
    """The service image's own answer to whether it has the keys of `variables` (NAME=value):
    `config` refuses keys it does not know."""
    environment = [flag for variable in variables for flag in ("-e", variable)]
    result = run("docker", "run", "--rm", *environment, os.environ["API_IMAGE"], "config", check=False)
    return "unknown key" not in result.stderr


def service_supports_sentinel():
    return image_knows("TSAPI_REDIS__SENTINEL__ADDRESSES=sentinel-1:26379",
                       f"TSAPI_REDIS__SENTINEL__MASTER={MASTER}", "TSAPI_REDIS__MIN_REPLICA_ACKS=1")


@test
def ha_api_survives_the_loss_of_the_primary():
    if not service_supports_sentinel():
        raise Skip(f"{os.environ['API_IMAGE']} has no Sentinel support (TSAPI_REDIS__SENTINEL__*)")
    ha("up", "--detach", "--wait", "api-ha")
    primary = primary_by("sentinel-1")
    wait_for_topology(primary, within=30)
    survivor = next(address for address in HA_NODES if address != primary)
    for service in (*HA_NODES.values(), *SENTINELS):
        assert as_admin(service, "ACL", "LOG", "RESET") == "OK"

    # With MIN_REPLICA_ACKS 1 the replica has it before the API answers.
    status, _, body, _ = put_json("/v1/timestamps/e2e-ha", {"epoch_ms": 8888}, port=API_HA_PORT)
    assert status in (200, 201) and body["epoch_ms"] == 8888, (status, body)

    # The bound: Sentinel's down-after, then the vote and the promotion (about a second here),
    # then the service finding the new primary; 10 s of margin for all but the first.
    bound = DOWN_AFTER + 10
    run("docker", "kill", "--signal", "KILL", ha_container(HA_NODES[primary]))
    killed = time.monotonic()
    wait_for("the API reads again after the primary died",
             lambda: request("GET", "/v1/timestamps/e2e-ha", port=API_HA_PORT)[0] == 200, bound)
    recovered = time.monotonic() - killed
    assert request("GET", "/v1/timestamps/e2e-ha", port=API_HA_PORT)[2]["epoch_ms"] == 8888
    assert all(primary_by(sentinel) == survivor for sentinel in SENTINELS)
    print(f"    the API answered 200 again {recovered:.1f}s after docker kill of the primary (bound {bound:.0f}s)")

    # No replica left: the write reaches the primary but is not acknowledged.
    assert_problem(put_json("/v1/timestamps/e2e-ha-alone", {"epoch_ms": 1}, port=API_HA_PORT), 503, "not-replicated")

    # The old primary returns as the new primary's replica; writes are acknowledged again.
    ha("up", "--detach", "--wait", HA_NODES[primary])
    wait_for_topology(survivor, within=40)
    wait_for("writes are acknowledged again",
             lambda: put_json("/v1/timestamps/e2e-ha-after", {"epoch_ms": 9999}, port=API_HA_PORT)[0] in (200, 201), 15)
    assert info(as_admin(HA_NODES[primary], "INFO", "replication")).get("role") == "slave"

    # A primary that restarts, as after a crash, must come back as the primary, not as a
    # replica of its own replica (a fixed --replicaof on redis-replica did that: no primary at
    # all until another failover). So redis-replica is made the primary, then restarted.
    promoted = f"{HA_NETWORK}.12"
    if primary_by("sentinel-1") != promoted:
        assert as_admin("sentinel-1", "SENTINEL", "FAILOVER", MASTER) == "OK"
        wait_for_topology(promoted, within=30)
    ha("restart", HA_NODES[promoted])
    wait_for("writes are acknowledged after the primary restarted",
             lambda: put_json("/v1/timestamps/e2e-ha-restarted", {"epoch_ms": 7}, port=API_HA_PORT)[0] in (200, 201),
             DOWN_AFTER + 10)
    wait_for_topology(primary_by("sentinel-1"), within=40)
    # The ACLs allowed everything the service, the Sentinels and the replica sent meanwhile.
    for service in (*HA_NODES.values(), *SENTINELS):
        assert as_admin(service, "ACL", "LOG") == "", f"{service} refused a command: {as_admin(service, 'ACL', 'LOG')}"


@test
def ha_sentinels_restarted_all_at_once_still_follow_the_promoted_primary():
    """Each Sentinel's config file, which it rewrites after a failover, is on a volume
    of its own (seeded once by sentinel-N-seed), so stopping all three and starting them again
    brings back what they had agreed on, not the primary they were first told about."""
    if not service_supports_sentinel():
        raise Skip(f"{os.environ['API_IMAGE']} has no Sentinel support (TSAPI_REDIS__SENTINEL__*)")
    ha("up", "--detach", "--wait", "api-ha")
    # The seed names redis-primary (.11) as the primary; make it the other one.
    initial, promoted = f"{HA_NETWORK}.11", f"{HA_NETWORK}.12"
    wait_for_topology(primary_by("sentinel-1"), within=40)
    if primary_by("sentinel-1") != promoted:
        assert as_admin("sentinel-1", "SENTINEL", "FAILOVER", MASTER) == "OK"
        wait_for_topology(promoted, within=30)

    acknowledged = {}

    def write(name, value):
        status = put_json(f"/v1/timestamps/{name}", {"epoch_ms": value}, port=API_HA_PORT)[0]
        if status in (200, 201):
            acknowledged[name] = value
        return status

    wait_for("writes are acknowledged", lambda: write("e2e-sentinel-restart-0", 1) in (200, 201), 15)
    for n in range(1, 20):
        write(f"e2e-sentinel-restart-{n}", 1000 + n)

    # Every Sentinel down at once: none can learn the primary from another on its way back.
    ha("stop", *SENTINELS)
    ha("up", "--detach", "--wait", *SENTINELS)
    named = {sentinel: primary_by(sentinel) for sentinel in SENTINELS}
    assert set(named.values()) == {promoted}, (
        f"after a restart of all Sentinels they name {named}; the primary is {promoted} "
        f"(the seed's {initial} means their state was lost)"
    )
    for seed in ("sentinel-1-seed", "sentinel-2-seed", "sentinel-3-seed"):
        details = json.loads(run("docker", "inspect", ha_container(seed)).stdout)[0]
        host = details["HostConfig"]
        assert details["State"]["ExitCode"] == 0, (seed, details["State"])
        assert details["Config"]["User"] == "999:999" and host["NetworkMode"] == "none", seed
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"], seed
        assert "no-new-privileges:true" in host["SecurityOpt"], seed
        assert "exists; left as it is" in ha("logs", "--no-color", seed).stdout, f"{seed} did not keep the file"
    wait_for_topology(promoted, within=30)

    # The service goes on writing, to the promoted node, and every acknowledged write is there.
    wait_for("writes are acknowledged after the Sentinels restarted",
             lambda: write("e2e-sentinel-restart-after", 2000) in (200, 201), DOWN_AFTER + 10)
    assert acknowledged, "no write was acknowledged"
    for name, value in acknowledged.items():
        status, _, body, _ = request("GET", f"/v1/timestamps/{name}", port=API_HA_PORT)
        assert status == 200 and body["epoch_ms"] == value, (name, status, body)
        assert as_admin(HA_NODES[promoted], "GET", KEY_PREFIX + name) == str(value), f"{name} is not on {promoted}"
    assert info(as_admin(HA_NODES[promoted], "INFO", "replication")).get("role") == "master"
    logs = ha("logs", "--no-color", *SENTINELS).stdout
    assert "not able to save the new configuration" not in logs, "a Sentinel could not save its config file"
    print(f"    {len(acknowledged)} acknowledged writes, all on {promoted} after the Sentinels restarted")


CLUSTER_NETWORK = os.environ.get("REDIS_CLUSTER_NETWORK", "10.203.118")
API_CLUSTER_PORT = int(os.environ.get("API_CLUSTER_PORT", "8082"))
CLUSTER_NODES = {f"{CLUSTER_NETWORK}.{11 + n}": f"redis-cluster-{1 + n}" for n in range(6)}
NODE_TIMEOUT = int(os.environ.get("REDIS_CLUSTER_NODE_TIMEOUT_MS", "5000")) / 1000


def on_cluster(*args, check=True, timeout=240):
    return compose("--profile", "cluster", *args, check=check, timeout=timeout)


def cluster_container(service):
    return container(service, profile="cluster")


def cluster_admin(service, *args):
    """redis-cli as admin in a cluster node's container (plaintext, on the internal network)."""
    return run("docker", "exec", "-e", f"REDISCLI_AUTH={read_secret('redis_admin_password')}",
               cluster_container(service), "/bin/redis-cli", "--no-auth-warning", "--user", "admin",
               *args, check=False).stdout.strip()


def cluster_nodes(service="redis-cluster-1"):
    """CLUSTER NODES as `service` sees it: (address, flags, slots) per node."""
    rows = []
    for line in cluster_admin(service, "CLUSTER", "NODES").split("\n"):
        fields = line.split()
        rows.append((fields[1].split(":")[0], fields[2], fields[8:]))
    return rows


@test
def cluster_is_created_once_spreads_names_and_survives_a_killed_primary():
    if not image_knows("TSAPI_REDIS__CLUSTER__ADDRESSES=10.0.0.1:6379"):
        raise Skip(f"{os.environ['API_IMAGE']} has no cluster mode (TSAPI_REDIS__CLUSTER__*)")
    on_cluster("up", "--detach", "--wait", "api-cluster")
    wait_for("api-cluster serves", lambda: request("GET", "/v1/timestamps/e2e-cluster-probe",
                                                     port=API_CLUSTER_PORT)[0] == 404, 30)
    created = on_cluster("logs", "--no-color", "redis-cluster-create").stdout
    assert "created a cluster of 6 nodes, 3 primaries" in created, created
    info_1 = info(cluster_admin("redis-cluster-1", "CLUSTER", "INFO"))
    assert info_1.get("cluster_state") == "ok" and info_1.get("cluster_size") == "3", info_1
    flags = [row[1] for row in cluster_nodes()]
    assert sum("master" in flag for flag in flags) == 3 and sum("slave" in flag for flag in flags) == 3, flags

    for service in (*CLUSTER_NODES.values(), "redis-cluster-create"):
        details = json.loads(run("docker", "inspect", cluster_container(service)).stdout)[0]
        host = details["HostConfig"]
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert details["Config"]["User"] in ("999:999", "10001:10001"), service
        assert host["PidsLimit"] > 0 and host["Memory"] > 0 and host["NanoCpus"] > 0, service
        assert not any(details["NetworkSettings"]["Ports"].values()), f"{service} has a host port"
        networks = [name.removeprefix(PROJECT + "_") for name in details["NetworkSettings"]["Networks"]]
        assert networks == ["redis-cluster"], (service, networks)
    assert json.loads(run("docker", "network", "inspect", PROJECT + "_redis-cluster").stdout)[0]["Internal"] is True
    for service in CLUSTER_NODES.values():
        assert cluster_admin(service, "ACL", "LOG", "RESET") == "OK", service

    # Names land on every shard.
    for n in range(30):
        status = put_json(f"/v1/timestamps/e2e-cluster-{n}", {"epoch_ms": 100 + n}, port=API_CLUSTER_PORT)[0]
        assert status in (200, 201), (n, status)
    primaries = {address: flag for address, flag, _ in cluster_nodes() if "master" in flag}
    holding = {address: int(cluster_admin(CLUSTER_NODES[address], "DBSIZE")) for address in primaries}
    assert all(count > 0 for count in holding.values()) and sum(holding.values()) >= 30, holding

    # A later `up` runs the creator again: it finds the cluster and changes nothing.
    before = sorted((address, "master" in flag) for address, flag, _ in cluster_nodes())
    on_cluster("up", "--detach", "--wait", "api-cluster")
    again = on_cluster("logs", "--no-color", "redis-cluster-create").stdout
    assert "already form a cluster; left as it is" in again, again
    assert sorted((address, "master" in flag) for address, flag, _ in cluster_nodes()) == before

    # The primary of one name dies. The bound: the node timeout before its peers suspect it, up
    # to as long again for a majority of primaries to report it (failure reports count for two
    # node timeouts), the replica's election (0.5 to 1 s, plus 1 s per rank), then the service
    # reading the new slot map; 10 s of margin for all but the first.
    name = "e2e-cluster-0"
    slot = cluster_admin("redis-cluster-1", "CLUSTER", "KEYSLOT", KEY_PREFIX + name)
    owner = next(address for address, flag, slots in cluster_nodes() if "master" in flag and any(
        int(r.split("-")[0]) <= int(slot) <= int(r.split("-")[-1]) for r in slots if not r.startswith("[")))
    survivor = next(service for address, service in CLUSTER_NODES.items() if address != owner)
    bound = 2 * NODE_TIMEOUT + 10
    run("docker", "kill", "--signal", "KILL", cluster_container(CLUSTER_NODES[owner]))
    killed = time.monotonic()
    promoted = []  # when a survivor first saw the killed primary failed, its slots gone to its replica

    def reads_again():
        if not promoted and any(address == owner and "fail" in flag and not slots
                                for address, flag, slots in cluster_nodes(survivor)):
            promoted.append(time.monotonic() - killed)
        return request("GET", f"/v1/timestamps/{name}", port=API_CLUSTER_PORT)[0] == 200

    wait_for("the API reads the name again after its primary died", reads_again, bound)
    recovered = time.monotonic() - killed
    assert request("GET", f"/v1/timestamps/{name}", port=API_CLUSTER_PORT)[2]["epoch_ms"] == 100
    print(f"    the API read the name again {recovered:.1f}s after docker kill of its primary (bound "
          f"{bound:.0f}s); {survivor} saw its replica take its slots after "
          f"{promoted[0] if promoted else float('nan'):.1f}s")
    # Every name is still there, from every shard; the promoted primary has no replica yet, so
    # a write to that shard is not acknowledged.
    for n in range(30):
        status, _, body, _ = request("GET", f"/v1/timestamps/e2e-cluster-{n}", port=API_CLUSTER_PORT)
        assert status == 200 and body["epoch_ms"] == 100 + n, (n, status, body)
    assert_problem(put_json(f"/v1/timestamps/{name}", {"epoch_ms": 1}, port=API_CLUSTER_PORT), 503, "not-replicated")

    # The killed node comes back with its nodes.conf as a replica of the promoted one, and
    # writes to that shard are acknowledged again.
    on_cluster("up", "--detach", "--wait", CLUSTER_NODES[owner])
    wait_for("the killed primary rejoins as a replica",
             lambda: info(cluster_admin(CLUSTER_NODES[owner], "INFO", "replication")).get("master_link_status") == "up", 40)
    wait_for("writes to its shard are acknowledged again",
             lambda: put_json(f"/v1/timestamps/{name}", {"epoch_ms": 7}, port=API_CLUSTER_PORT)[0] in (200, 201), 15)
    for service in CLUSTER_NODES.values():
        assert cluster_admin(service, "ACL", "LOG") == "", f"{service} refused a command: {cluster_admin(service, 'ACL', 'LOG')}"


def main():
    failures = skipped = 0
    # E2E_ONLY=<part of a name> runs only the tests whose names contain it (while working on them).
    selected = [function for function in TESTS if os.environ.get("E2E_ONLY", "") in function.__name__]
    for function in selected:
        started = time.monotonic()
        try:
            function()
        except Skip as reason:
            skipped += 1
            print(f"skip {function.__name__}: {reason}")
        except Exception:  # noqa: BLE001 - report every failing test, then fail the run
            failures += 1
            print(f"FAIL {function.__name__} ({time.monotonic() - started:.1f}s)")
            traceback.print_exc()
            # Every profile's containers: a failing ha or cluster case needs its own logs.
            print(compose("--profile", "*", "ps", "--all", check=False).stdout)
            print(compose("--profile", "*", "logs", "--no-color", "--tail", "20", check=False).stdout)
            compose("up", "--detach", "--wait", check=False)
        else:
            print(f"ok   {function.__name__} ({time.monotonic() - started:.1f}s)")
    print(f"e2e: {len(selected) - failures - skipped} passed, {failures} failed, {skipped} skipped"
          + (f" ({len(TESTS) - len(selected)} not selected by E2E_ONLY)" if len(selected) < len(TESTS) else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
