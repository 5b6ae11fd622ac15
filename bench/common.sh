# shellcheck shell=bash
# What bench/run and bench/instructions share, sourced by both: a temporary directory and the
# processes started in it, cleaned up on exit; free ports; waiting for a server; a private
# redis-server without persistence. Sets `work`, and `redis_port` and `redis_pid` once
# start_redis has run.

work=$(mktemp -d -t "timestamp-api-$(basename "$0").XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every 50 ms for up to SECONDS.
wait_for() {
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq $((seconds * 20))); do "$@" >/dev/null 2>&1 && return; sleep 0.05; done
    echo "$(basename "$0"): $what did not come up" >&2
    exit 1
}

start_redis() {
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no \
        --logfile "$work/redis.log" &
    redis_pid=$!
    pids+=("$redis_pid")
    wait_for redis-server 10 redis-cli -p "$redis_port" ping
}
