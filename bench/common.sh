# shellcheck shell=bash
# What bench/run and bench/instructions share, sourced by both: a temporary directory and the
# processes started in it, cleaned up on exit; free ports; waiting for a server; a private
# redis-server without persistence; the service under load and the wrk arguments of each case
# (bench/run and bench/profile), and the same with TLS to Redis or on a Redis Cluster
# (bench/run). Sets `work`, `redis_port` and `redis_pid` once start_redis (or start_cluster) has
# run, and `service_pid`, `base` and `admin_base` once start_service has.

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

# With `redis_tls` set to a directory from make_certificates, start_redis starts a redis-server
# that speaks only TLS, and start_service connects to it with rediss:// and that CA.
redis_tls=""

# make_certificates DIR: a CA and a certificate for 127.0.0.1 signed by it (ca.crt, tls.crt,
# tls.key), made with openssl for this run.
make_certificates() {
    local dir=$1
    mkdir -p "$dir"
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 2 \
        -subj "/CN=bench CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=127.0.0.1" \
        -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
    openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -set_serial 1 \
        -days 2 -extfile <(printf 'subjectAltName=IP:127.0.0.1\n') -out "$dir/tls.crt" 2>/dev/null
}

# Set by start_cluster: the seeds for TSAPI_REDIS__CLUSTER__ADDRESSES, which start_service
# then passes, and redis_cli follows the cluster's redirections.
cluster_seeds=""

# redis_cli ARGS...: redis-cli to the private Redis, with TLS if it speaks TLS.
redis_cli() {
    if [ -n "$redis_tls" ]; then
        redis-cli --tls --cacert "$redis_tls/ca.crt" -p "$redis_port" "$@"
    elif [ -n "$cluster_seeds" ]; then
        redis-cli -c -p "$redis_port" "$@"
    else
        redis-cli -p "$redis_port" "$@"
    fi
}

start_redis() {
    redis_port=$(free_port)
    local listen=(--port "$redis_port")
    if [ -n "$redis_tls" ]; then
        listen=(--port 0 --tls-port "$redis_port" --tls-cert-file "$redis_tls/tls.crt"
            --tls-key-file "$redis_tls/tls.key" --tls-ca-cert-file "$redis_tls/ca.crt"
            --tls-auth-clients no)
    fi
    redis-server "${listen[@]}" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no \
        --logfile "$work/redis-$redis_port.log" &
    redis_pid=$!
    pids+=("$redis_pid")
    wait_for redis-server 10 redis_cli ping
}

# start_cluster: three redis-servers in cluster mode, without persistence or replicas (the bench
# measures one shard's share of the work), joined by redis-cli --cluster create. Sets
# `cluster_seeds`, and `redis_port` and `redis_pid` to the node that serves ts:bench, the key
# of the GET and PUT cases.
start_cluster() {
    local ports=() port
    declare -A node_pids=()
    for _ in 1 2 3; do
        port=$(free_port)
        mkdir -p "$work/cluster-$port"
        redis-server --port "$port" --bind 127.0.0.1 --dir "$work/cluster-$port" --save "" \
            --appendonly no --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-port "$(free_port)" --logfile "$work/redis-$port.log" &
        pids+=("$!")
        node_pids[$port]=$!
        ports+=("$port")
        wait_for redis-server 10 redis-cli -p "$port" ping
    done
    redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
    wait_for "the cluster" 10 sh -c "redis-cli -p ${ports[0]} cluster info | grep -q cluster_state:ok"
    redis-cli -c -p "${ports[0]}" set ts:bench 1 >/dev/null
    for port in "${ports[@]}"; do
        if [ "$(redis-cli -p "$port" exists ts:bench)" = 1 ]; then
            redis_port=$port
            redis_pid=${node_pids[$port]}
        fi
    done
    cluster_seeds=$(printf '127.0.0.1:%s,' "${ports[@]}")
    cluster_seeds=${cluster_seeds%,}
}

# Variables (NAME=value) that start_service adds to the service's environment, such as the
# [traces] keys of bench/run's traced rows.
service_env=()

# start_service BINARY: the service with its default configuration (and `service_env`) against
# the private Redis (start_redis first), its access log in $work; a stored name `bench` and 150
# more, so that a page of 100 is full. Sets `admin_base` to its admin listener.
start_service() {
    local api_port admin_port
    api_port=$(free_port)
    admin_port=$(free_port)
    local tls=()
    if [ -n "$redis_tls" ]; then
        tls=(TSAPI_REDIS__URL="rediss://127.0.0.1:$redis_port/0" TSAPI_REDIS__TLS__CA_FILE="$redis_tls/ca.crt")
    elif [ -n "$cluster_seeds" ]; then
        tls=(TSAPI_REDIS__CLUSTER__ADDRESSES="$cluster_seeds")
    fi
    env TSAPI_LISTEN="127.0.0.1:$api_port" TSAPI_ADMIN_LISTEN="127.0.0.1:$admin_port" \
        TSAPI_REDIS__URL="redis://127.0.0.1:$redis_port/0" "${tls[@]}" "${service_env[@]}" \
        "$1" >>"$work/access.log" 2>>"$work/service.err" &
    service_pid=$!
    pids+=("$service_pid")
    base=http://127.0.0.1:$api_port
    admin_base=http://127.0.0.1:$admin_port
    wait_for "the service" 10 curl -fsS "$admin_base/readyz"
    curl -fsS -X PUT "$base/v1/timestamps/bench" >/dev/null
    # The commands come on stdin, so redis_cli gets no arguments here (SC2119).
    # shellcheck disable=SC2119
    for i in $(seq 150); do printf 'SET ts:list-%03d 1795628183123\n' "$i"; done |
        redis_cli >/dev/null
}

# case_arguments CASE: sets `arguments` to wrk's arguments for one of the cases against the
# service (start_service first).
case_arguments() {
    case $1 in
        GET) arguments=("$base/v1/timestamps/bench") ;;
        MISS) arguments=("$base/v1/timestamps/missing") ;;
        PUT) arguments=(-s bench/put.lua "$base/v1/timestamps/bench") ;;
        LIST100) arguments=("$base/v1/timestamps?limit=100") ;;
        MIX) arguments=(-s bench/mix.lua "$base") ;;
        *) echo "$(basename "$0"): unknown case $1" >&2; exit 1 ;;
    esac
}
